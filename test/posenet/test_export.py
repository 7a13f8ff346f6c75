from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.posenet.checkpoint import load_trained_model
from geoloc_ros.posenet.errors import CheckpointError, ModelFormatError
from geoloc_ros.posenet.export import FP16_TOLERANCE, FP32_TOLERANCE, export_onnx, sample_images
from geoloc_ros.posenet.modelinfo import METADATA_KEY, PoseNetModelInfo
from geoloc_ros.posenet.preprocess import to_network_tensor
from geoloc_ros.posenet.train import TrainResult, train


def run_both(
    synth: SimpleNamespace, model_path: Path, checkpoint: Path, batch: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    trained = load_trained_model(checkpoint)
    spec = trained.model_config.input_spec
    images = synth.make_views(n_groups=1, views_per_group=batch, width=spec.width, height=spec.height, seed=9)
    x = to_network_tensor([images.image(i) for i in range(batch)], spec)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    ours = session.run(["pose", "log_var"], {"image": x})
    with torch.no_grad():
        theirs = [t.numpy() for t in trained.model(torch.from_numpy(x))]
    return ours, theirs


@pytest.mark.parametrize(
    ("precision", "tolerance"),
    [("fp32", FP32_TOLERANCE), ("fp16", FP16_TOLERANCE), ("fp16-weights", FP16_TOLERANCE)],
)
def test_onnx_matches_pytorch_with_dynamic_batch(
    synth: SimpleNamespace,
    tiny_run: TrainResult,
    tiny_onnx: dict[str, Path],
    precision: str,
    tolerance: float,
) -> None:
    path = tiny_onnx[precision]
    for batch in (1, 5):
        ours, theirs = run_both(synth, path, tiny_run.best_checkpoint, batch)
        for a, b in zip(ours, theirs, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=tolerance, rtol=0)
    model = onnx.load(path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O even for FP16
    props = {p.key: p.value for p in model.metadata_props}
    info = PoseNetModelInfo.from_metadata_props(props, str(path))
    assert info.precision == precision and info.input_spec.width == 64
    assert info.metadata.training["checkpoint_epoch"] == tiny_run.best_epoch
    # The held-out variance calibration of the exported checkpoint travels in the metadata.
    best = tiny_run.history[tiny_run.best_epoch - 1]
    expected = (best["val_position_variance_scale"], best["val_rotation_variance_scale"])
    assert info.variance_scale == pytest.approx(expected)


def test_fp16_files_are_smaller(tiny_onnx: dict[str, Path]) -> None:
    assert tiny_onnx["fp16"].stat().st_size < 0.7 * tiny_onnx["fp32"].stat().st_size
    assert tiny_onnx["fp16-weights"].stat().st_size < 0.7 * tiny_onnx["fp32"].stat().st_size


def test_export_refuses_overwrite_missing_checkpoint_and_low_opset(
    tiny_run: TrainResult, tiny_onnx, tmp_path
) -> None:
    with pytest.raises(OutputExistsError):
        export_onnx(tiny_run.run_dir, tiny_onnx["fp32"])
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        export_onnx(tmp_path, tmp_path / "m.onnx")
    with pytest.raises(ModelFormatError, match="opset must be >= 17"):
        export_onnx(tiny_run.run_dir, tmp_path / "m.onnx", opset=13)
    with pytest.raises(ModelFormatError, match="exclude each other"):
        export_onnx(tiny_run.run_dir, tmp_path / "m.onnx", fp16=True, fp16_weights=True)
    # A tolerance nothing can meet fails the numerical check and writes nothing.
    with pytest.raises(ModelFormatError, match="differs from PyTorch"):
        export_onnx(tiny_run.run_dir, tmp_path / "m.onnx", fp16=True, tolerance=1e-12)
    assert not (tmp_path / "m.onnx").exists()


def test_sample_images_are_deterministic() -> None:
    a, b = sample_images(2, 24, 32, seed=1), sample_images(2, 24, 32, seed=1)
    assert a.dtype == np.uint8 and a.shape == (2, 24, 32, 3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_lite0_export_fp32_and_fp16(synth: SimpleNamespace, tmp_path: Path) -> None:
    """The real architecture (EfficientNet-Lite0, pretrained) exports and matches PyTorch."""
    torch.set_num_threads(1)
    config = synth.tiny_config(
        epochs=1,
        model={"input_width": 96, "input_height": 72, "freeze_stages": 12},
    )
    run = train(
        synth.make_views(n_groups=3, views_per_group=4, width=96, height=72), tmp_path / "run", config
    )
    for fp16 in (False, True):
        report = export_onnx(run.run_dir, tmp_path / f"lite0_{fp16}.onnx", fp16=fp16)
        assert max(report.max_abs_diff_pose, report.max_abs_diff_log_var) <= report.tolerance
        ours, theirs = run_both(synth, report.path, run.best_checkpoint, 2)
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, atol=tolerance, rtol=0)
    assert (tmp_path / "lite0_True.onnx").stat().st_size < 9e6
    props = {p.key: p.value for p in onnx.load(tmp_path / "lite0_True.onnx").metadata_props}
    assert PoseNetModelInfo.from_metadata_props(props).metadata.backbone == "efficientnet_lite0"
    assert METADATA_KEY in props
