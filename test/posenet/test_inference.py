from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.posenet.checkpoint import load_trained_model
from geoloc_ros.posenet.errors import InferenceError, ModelFormatError
from geoloc_ros.posenet.inference import (
    CPU,
    CUDA,
    TENSORRT,
    PoseNetPredictor,
    read_model_info,
    resolve_providers,
)
from geoloc_ros.posenet.preprocess import resize_for_network, to_network_tensor
from geoloc_ros.posenet.targets import decode_outputs
from geoloc_ros.posenet.train import TrainResult


def test_inference_and_temporal_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import geoloc_ros.posenet.inference, geoloc_ros.posenet.temporal\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_provider_resolution(caplog: pytest.LogCaptureFixture) -> None:
    everything = [TENSORRT, CUDA, CPU]
    assert resolve_providers("auto", everything) == everything
    assert resolve_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert resolve_providers("auto", [CPU]) == [CPU]
    assert resolve_providers("cuda,cpu", everything) == [CUDA, CPU]
    assert resolve_providers(["tensorrt"], everything) == [TENSORRT, CPU]
    with caplog.at_level(logging.WARNING):
        assert resolve_providers("tensorrt", [CPU]) == [CPU]
    assert "TensorrtExecutionProvider is not available" in caplog.text
    with pytest.raises(InferenceError, match="unknown execution provider 'tpu'"):
        resolve_providers("tpu", [CPU])


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_predictions_match_the_pytorch_model(
    synth: SimpleNamespace, tiny_run: TrainResult, tiny_onnx: dict[str, Path], precision: str
) -> None:
    predictor = PoseNetPredictor(tiny_onnx[precision], providers="auto")
    assert predictor.provider == CPU  # this machine has no GPU
    views = synth.make_views(n_groups=1, views_per_group=3, width=160, height=120, seed=4)
    images = [views.image(i) for i in range(3)]
    estimates = predictor.predict_batch(images, [10, 20, 30])
    trained = load_trained_model(tiny_run.best_checkpoint)
    spec = trained.model_config.input_spec
    x = to_network_tensor([resize_for_network(im, spec) for im in images], spec)
    with torch.no_grad():
        pose, log_var = (t.numpy() for t in trained.model(torch.from_numpy(x)))
    reference = decode_outputs(pose, log_var, trained.normalization)
    tolerance_m = 0.02 * trained.normalization.position_scale if precision == "fp16" else 1e-3
    for i, estimate in enumerate(estimates):
        assert estimate.stamp_ns == 10 * (i + 1) and estimate.source == "posenet"
        np.testing.assert_allclose(estimate.position[:2], reference.position[i, :2], atol=tolerance_m)
        assert abs(np.angle(np.exp(1j * (estimate.yaw - reference.yaw[i])))) < np.deg2rad(1.5)
        np.testing.assert_allclose(np.diag(estimate.covariance)[2:5], UNKNOWN_VARIANCE)
        expected_variance = reference.position_variance[i] * predictor.info.variance_scale[0]
        assert estimate.covariance[0, 0] == pytest.approx(expected_variance, rel=0.05)
    single = predictor.predict(images[1], 20)
    np.testing.assert_allclose(single.position, estimates[1].position, atol=1e-5)


def test_mounting_and_input_camera(synth: SimpleNamespace, tiny_onnx: dict[str, Path]) -> None:
    mounting = CameraMounting(translation=(2.0, 0.0, 1.0))
    plain = PoseNetPredictor(tiny_onnx["fp32"], providers="cpu", warmup_runs=0)
    mounted = PoseNetPredictor(tiny_onnx["fp32"], t_base_optical=mounting.base_to_optical(), warmup_runs=0)
    image = synth.make_views(n_groups=1, views_per_group=1, width=64, height=48, seed=3).image(0)
    a, b = plain.predict(image, 0), mounted.predict(image, 0)
    # base_link is 2 m behind the camera along the (same) heading.
    expected = a.position[:2] - 2.0 * np.array([np.cos(a.yaw), np.sin(a.yaw)])
    np.testing.assert_allclose(b.position[:2], expected, atol=1e-6)
    info = read_model_info(tiny_onnx["fp32"])
    rectified = PoseNetPredictor(tiny_onnx["fp32"], input_camera=info.camera, warmup_runs=0)
    big = synth.make_views(
        n_groups=1, views_per_group=1, width=info.camera.width, height=info.camera.height, seed=3
    ).image(0)
    assert np.isfinite(rectified.predict(big, 0).position).all()


def test_bad_inputs_and_models(tiny_onnx: dict[str, Path], tmp_path: Path) -> None:
    predictor = PoseNetPredictor(tiny_onnx["fp32"], warmup_runs=0)
    good = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(InferenceError, match="uint8"):
        predictor.predict(good.astype(np.float32), 0)
    with pytest.raises(InferenceError, match=r"\(H, W, 3\)"):
        predictor.predict(good[..., 0], 0)
    with pytest.raises(InferenceError, match="2 images but 1 stamps"):
        predictor.predict_batch([good, good], [0])
    with pytest.raises(InferenceError, match="float32"):
        predictor.run(np.zeros((1, 3, 10, 10), np.float32))
    # An ONNX file without PoseNet metadata is refused with a message naming it.
    node = helper.make_node("Identity", ["image"], ["pose"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("pose", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(ModelFormatError, match=r"plain\.onnx: not a geoloc_ros PoseNet model"):
        PoseNetPredictor(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelFormatError, match=r"junk\.onnx: onnxruntime cannot load"):
        PoseNetPredictor(tmp_path / "junk.onnx")
    with pytest.raises(ModelFormatError, match="not found"):
        PoseNetPredictor(tmp_path / "missing.onnx")
