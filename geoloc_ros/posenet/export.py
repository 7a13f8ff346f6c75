"""Export a trained PoseNet to ONNX (opset >= 17, dynamic batch, optional FP16) and check it.

The exported graph has the interface of :mod:`geoloc_ros.posenet.modelinfo` and carries its
metadata, so :class:`~geoloc_ros.posenet.inference.PoseNetPredictor` needs nothing else. FP16
export converts weights and arithmetic to float16 but keeps float32 inputs and outputs
(``keep_io_types``), so the same preprocessing feeds both precisions; onnxruntime runs it on the
CPU as well as on CUDA/TensorRT.

Before anything is written, onnxruntime (CPU) runs the exported graph and its outputs are compared
with PyTorch's on the same inputs; the export fails if they differ by more than the tolerance
(defaults: :data:`FP32_TOLERANCE`, :data:`FP16_TOLERANCE`, absolute, on the normalised outputs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch

from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.io.atomic import atomic_write_bytes, refuse_existing_output
from geoloc_ros.posenet.checkpoint import TrainedModel, load_trained_model, resolve_checkpoint
from geoloc_ros.posenet.errors import ModelFormatError
from geoloc_ros.posenet.modelinfo import (
    INPUT_NAME,
    LOG_VAR_OUTPUT,
    METADATA_KEY,
    POSE_OUTPUT,
    PoseNetModelInfo,
    Precision,
)
from geoloc_ros.posenet.onnxutil import convert_to_fp16, quiet_onnx_tools, store_weights_fp16
from geoloc_ros.posenet.preprocess import to_network_tensor
from geoloc_ros.posenet.targets import decode_outputs

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MIN_OPSET = 17
# Largest accepted |onnxruntime - torch| on the pose and log-variance outputs (normalised units).
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2


@dataclass(frozen=True)
class ExportReport:
    path: Path
    precision: str
    opset: int
    size_bytes: int
    max_abs_diff_pose: float
    max_abs_diff_log_var: float
    max_position_diff_m: float
    max_heading_diff_deg: float
    tolerance: float
    variance_scale: tuple[float, float]


def sample_images(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Deterministic, smooth random BGR uint8 images (closer to photographs than white noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    images = [cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse]
    noise = rng.normal(0.0, 8.0, size=(count, height, width, 3))
    return np.clip(np.stack(images) + noise, 0, 255).astype(np.uint8)


def _torch_to_onnx(trained: TrainedModel, opset: int) -> onnx.ModelProto:
    model = trained.model.float().cpu().eval()
    model = model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    spec = trained.model_config.input_spec
    dummy = torch.zeros((2, 3, spec.height, spec.width), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with quiet_onnx_tools(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (dummy,),
            input_names=[INPUT_NAME],
            output_names=[POSE_OUTPUT, LOG_VAR_OUTPUT],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: batch},),
        )
    if program is None:
        raise ModelFormatError("torch.onnx.export returned no program")
    return program.model_proto


def _run_onnx(model_bytes: bytes, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    pose, log_var = session.run([POSE_OUTPUT, LOG_VAR_OUTPUT], {INPUT_NAME: inputs})
    return np.asarray(pose), np.asarray(log_var)


def export_onnx(
    run_or_checkpoint: str | Path,
    out_path: str | Path,
    *,
    fp16: bool = False,
    fp16_weights: bool = False,
    opset: int = DEFAULT_OPSET,
    which: str = "best",
    overwrite: bool = False,
    tolerance: float | None = None,
    calibrate_variance: bool = True,
) -> ExportReport:
    """Export the ``best``/``last`` checkpoint of a run (or a checkpoint file) to ``out_path``.

    ``calibrate_variance`` stores the variance scale factors measured on the held-out locations
    at that checkpoint (``val_*_variance_scale``) in the metadata, so the published covariance
    matches the errors on unseen places; without validation data they are 1.

    ``fp16``: float16 weights and arithmetic (for GPUs); ``fp16_weights``: float16 weights, float32
    arithmetic (half the file at FP32 speed on a CPU; :func:`.onnxutil.store_weights_fp16`).
    """
    out = Path(out_path)
    refuse_existing_output(out, overwrite)
    trained = load_trained_model(resolve_checkpoint(run_or_checkpoint, which))
    return export_trained_model(
        trained,
        out,
        fp16=fp16,
        fp16_weights=fp16_weights,
        opset=opset,
        overwrite=overwrite,
        tolerance=tolerance,
        calibrate_variance=calibrate_variance,
    )


def export_trained_model(
    trained: TrainedModel,
    out_path: str | Path,
    *,
    fp16: bool = False,
    fp16_weights: bool = False,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    tolerance: float | None = None,
    calibrate_variance: bool = True,
) -> ExportReport:
    """Export an in-memory trained model (see :func:`export_onnx`)."""
    if opset < MIN_OPSET:
        raise ModelFormatError(f"opset must be >= {MIN_OPSET}, got {opset}")
    if fp16 and fp16_weights:
        raise ModelFormatError(
            "fp16 (weights and arithmetic) and fp16_weights (weights only) exclude each other"
        )
    out = Path(out_path)
    refuse_existing_output(out, overwrite)
    spec = trained.model_config.input_spec
    proto = _torch_to_onnx(trained, opset)
    precision: Precision = "fp16" if fp16 else "fp16-weights" if fp16_weights else "fp32"
    if fp16:
        proto = convert_to_fp16(proto)
    elif fp16_weights:
        proto = store_weights_fp16(proto)
    scale = variance_calibration(trained.summary) if calibrate_variance else (1.0, 1.0)
    info = PoseNetModelInfo.build(
        spec,
        trained.normalization,
        trained.camera,
        trained.model_config.backbone,
        precision,
        training={"checkpoint_epoch": trained.epoch, **_plain(trained.summary)},
        variance_scale=scale,
        map_origin=trained.map_origin,
        map_id=trained.map_id,
    )
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()
    proto.doc_string = (
        f"geoloc_ros PoseNet ({trained.model_config.backbone}, dof={trained.normalization.dof}, {precision})"
    )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelFormatError(f"exported graph fails the ONNX checker: {exc}") from None
    model_bytes = proto.SerializeToString()
    actual_opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))

    # Compare with PyTorch before writing anything.
    inputs = to_network_tensor(sample_images(4, spec.height, spec.width), spec)
    with torch.no_grad():
        ref_pose, ref_log_var = (t.numpy() for t in trained.model(torch.from_numpy(inputs)))
    pose, log_var = _run_onnx(model_bytes, inputs)
    limit = (
        tolerance if tolerance is not None else (FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE)
    )
    diff_pose = float(np.max(np.abs(pose - ref_pose)))
    diff_log_var = float(np.max(np.abs(log_var - ref_log_var)))
    ours = decode_outputs(pose, log_var, trained.normalization)
    theirs = decode_outputs(ref_pose, ref_log_var, trained.normalization)
    diff_m = float(np.max(np.linalg.norm(ours.position - theirs.position, axis=1)))
    diff_deg = float(np.rad2deg(np.max(np.abs(wrap_angle(ours.yaw - theirs.yaw)))))
    if max(diff_pose, diff_log_var) > limit:
        raise ModelFormatError(
            f"ONNX ({precision}) output differs from PyTorch by {max(diff_pose, diff_log_var):.3g} "
            f"(> tolerance {limit:.3g}); not writing {out}"
        )
    atomic_write_bytes(out, model_bytes)
    report = ExportReport(
        out,
        precision,
        actual_opset,
        len(model_bytes),
        diff_pose,
        diff_log_var,
        diff_m,
        diff_deg,
        limit,
        scale,
    )
    logger.info(
        "exported %s (%s, %.1f MB); max |onnx - torch|: pose %.2g, log_var %.2g (%.3f m, %.3f deg)",
        out,
        precision,
        len(model_bytes) / 1e6,
        diff_pose,
        diff_log_var,
        diff_m,
        diff_deg,
    )
    return report


def variance_calibration(metrics: dict[str, Any]) -> tuple[float, float]:
    """(position, rotation) variance scales: those of the held-out-by-location calibration
    (``calibration_*``, see :mod:`geoloc_ros.posenet.calibration`), else those recorded by
    validation (``val_*``); 1 where absent or invalid."""
    scales = []
    for kind in ("position", "rotation"):
        scale = 1.0
        for prefix in ("calibration", "val"):
            value = metrics.get(f"{prefix}_{kind}_variance_scale")
            if isinstance(value, (int, float)) and np.isfinite(value) and value > 0:
                scale = float(value)
                break
        scales.append(scale)
    return scales[0], scales[1]


def _plain(summary: dict) -> dict:
    """Keep JSON-friendly scalars of the training summary for the metadata."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
