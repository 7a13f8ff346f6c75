"""PoseNet inference with onnxruntime only: what runs on the vehicle (never imports torch).

Everything the model needs comes from the ``.onnx`` file's metadata
(:mod:`geoloc_ros.posenet.modelinfo`). Frames:

- the network regresses ``T_map_camerabody`` (camera body: x forward, y left, z up);
- ``t_base_optical`` is the camera mounting ``T_base_optical``
  (:meth:`geoloc_ros.geometry.frames.CameraMounting.base_to_optical`); the default is a camera
  whose body frame is ``base_link`` itself;
- the result is a :class:`~geoloc_ros.geometry.estimate.PoseEstimate` of ``T_map_base`` whose
  covariance comes from the predicted log-variances: position variance on x and y, heading
  variance on yaw (plus the lever-arm term when the camera is not at ``base_link``), and the
  'unknown' variance on z, roll and pitch (for ``dof=3`` models).

Execution providers: ``"auto"`` tries TensorRT, then CUDA, then the CPU, keeping those this
onnxruntime build offers; an explicit list (names or ``tensorrt``/``cuda``/``cpu``) is tried in
order, the CPU always last as a fallback. The chosen provider is logged and exposed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.geometry.sources import SOURCE_POSENET
from geoloc_ros.posenet.errors import InferenceError, ModelFormatError
from geoloc_ros.posenet.modelinfo import INPUT_NAME, LOG_VAR_OUTPUT, POSE_OUTPUT, PoseNetModelInfo
from geoloc_ros.posenet.preprocess import (
    InputRectifier,
    check_bgr_image,
    resize_for_network,
    to_network_tensor,
)
from geoloc_ros.posenet.targets import CameraPosePrediction, decode_outputs

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}
AUTO_ORDER = (TENSORRT, CUDA, CPU)
# What onnxruntime raises for unreadable or unsupported model files (none derive from a common base).
_ORT_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidProtobuf,
    ort_state.InvalidGraph,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def resolve_providers(
    requested: str | Sequence[str] = "auto", available: Sequence[str] | None = None
) -> list[str]:
    """Execution providers to try, best first, restricted to those ``available`` (default: this build's).

    ``requested`` is ``"auto"``, one name, a comma-separated string or a list; names may be the
    onnxruntime ones or the aliases ``tensorrt``, ``cuda``, ``cpu``. Unknown names raise; known
    but unavailable ones are skipped with a warning. The CPU provider is always appended.
    """
    have = list(available if available is not None else ort.get_available_providers())
    if isinstance(requested, str):
        names = [n.strip() for n in requested.split(",") if n.strip()]
    else:
        names = [str(n) for n in requested]
    explicit = names not in ([], ["auto"])
    if not explicit:
        wanted = list(AUTO_ORDER)
    else:
        wanted = []
        for name in names:
            full = PROVIDER_ALIASES.get(name.lower(), name)
            if full not in AUTO_ORDER and full not in have:
                raise InferenceError(
                    f"unknown execution provider {name!r}; use auto, tensorrt, cuda, cpu or one of {have}"
                )
            wanted.append(full)
    chosen = []
    for name in wanted:
        if name in have and name not in chosen:
            chosen.append(name)
        elif name not in have and explicit:
            logger.warning(
                "execution provider %s is not available in this onnxruntime build (%s)", name, have
            )
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


class PoseNetPredictor:
    """Loads an exported PoseNet and turns BGR images into vehicle pose estimates.

    ``input_camera``: the on-board camera (size, intrinsics, distortion). When given, each image
    is undistorted and resampled onto the model's training camera at the network resolution in
    one remap; when omitted, images are simply resized (right when the camera matches the
    training views' intrinsics, as the map bundle renders them).

    ``intra_op_threads``: onnxruntime CPU threads (0 = one per core); ``allow_spinning``: let idle
    worker threads spin (lower latency on an otherwise idle machine, much higher on a busy one).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        providers: str | Sequence[str] = "auto",
        t_base_optical: Pose3D | None = None,
        input_camera: PinholeCamera | None = None,
        intra_op_threads: int = 0,
        allow_spinning: bool = False,
        warmup_runs: int = 2,
        source: str = SOURCE_POSENET,
        tensorrt_cache_dir: str | Path | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelFormatError(f"{path}: model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        # Spin-waiting worker threads double the latency when other processes share the cores
        # (measured on a loaded 2-core machine); a dedicated machine may enable it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.info = read_model_info(path)
        chosen = resolve_providers(providers)
        provider_list: list[Any] = [
            (name, self._provider_options(name, tensorrt_cache_dir)) for name in chosen
        ]
        try:
            self._session = ort.InferenceSession(str(path), options, providers=provider_list)
        except _ORT_LOAD_ERRORS as exc:
            raise ModelFormatError(f"{path}: onnxruntime cannot load the model: {exc}") from None
        self.path = path
        self.provider = self._session.get_providers()[0]
        self.source = source
        self.t_base_optical = t_base_optical
        self.spec = self.info.input_spec
        self._rectifier: InputRectifier | None = None
        self.set_input_camera(input_camera)
        self._warned_aspect = False
        logger.info(
            "PoseNet %s (%s, dof=%d, %dx%d input) on %s",
            path.name,
            self.info.precision,
            self.info.dof,
            self.spec.width,
            self.spec.height,
            self.provider,
        )
        for _ in range(max(0, warmup_runs)):
            self.run(np.zeros((1, 3, self.spec.height, self.spec.width), np.float32))

    def set_input_camera(self, input_camera: PinholeCamera | None) -> None:
        """Resample images of ``input_camera`` onto the training camera (None: plain resize)."""
        self._rectifier = (
            InputRectifier(input_camera, self.info.camera, self.spec) if input_camera is not None else None
        )

    def _provider_options(self, name: str, cache_dir: str | Path | None) -> dict[str, Any]:
        if name != TENSORRT:
            return {}
        options: dict[str, Any] = {"trt_fp16_enable": self.info.precision == "fp16"}
        if cache_dir is not None:
            options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
        return options

    # ------------------------------------------------------------------ low level
    def preprocess(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images (any size) -> the ``(N, 3, H, W)`` float32 network input."""
        resized = []
        for i, image in enumerate(images_bgr):
            check_bgr_image(image, f"image {i}")
            if self._rectifier is not None:
                resized.append(self._rectifier(image))
                continue
            self._check_aspect(image)
            resized.append(resize_for_network(image, self.spec))
        if not resized:
            raise InferenceError("no images given")
        return to_network_tensor(resized, self.spec)

    def _check_aspect(self, image: np.ndarray) -> None:
        cam = self.info.camera
        ratio = (image.shape[1] / image.shape[0]) / (cam.width / cam.height)
        if abs(ratio - 1.0) > 0.02 and not self._warned_aspect:
            logger.warning(
                "image aspect %dx%d differs from the training views' %dx%d: pass input_camera to "
                "resample it onto the training camera",
                image.shape[1],
                image.shape[0],
                cam.width,
                cam.height,
            )
            self._warned_aspect = True

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw network outputs ``(pose, log_var)`` of a preprocessed batch."""
        expected = (3, self.spec.height, self.spec.width)
        if batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != expected:
            raise InferenceError(
                f"network input must be float32 (N, {expected}), got {batch.dtype} {batch.shape}"
            )
        pose, log_var = self._session.run([POSE_OUTPUT, LOG_VAR_OUTPUT], {INPUT_NAME: batch})
        return np.asarray(pose, dtype=np.float32), np.asarray(log_var, dtype=np.float32)

    def predict_camera(self, images_bgr: Sequence[np.ndarray]) -> CameraPosePrediction:
        """Camera body poses in ``map`` (metres, radians) with variances, one per image."""
        pose, log_var = self.run(self.preprocess(images_bgr))
        return decode_outputs(pose, log_var, self.info.normalization, self.info.variance_scale)

    # ------------------------------------------------------------------ estimates
    def predict_batch(self, images_bgr: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> list[PoseEstimate]:
        """Vehicle pose estimates (``T_map_base``) of a batch of images, stamped as given."""
        if len(images_bgr) != len(stamps_ns):
            raise InferenceError(f"{len(images_bgr)} images but {len(stamps_ns)} stamps")
        start = time.perf_counter()
        prediction = self.predict_camera(images_bgr)
        elapsed_ms = (time.perf_counter() - start) * 1e3 / len(images_bgr)
        info = {"provider": self.provider, "inference_ms": elapsed_ms}
        return [
            prediction.base_estimate(i, int(stamp), self.t_base_optical, self.source, info)
            for i, stamp in enumerate(stamps_ns)
        ]

    def predict(self, image_bgr: np.ndarray, stamp_ns: int) -> PoseEstimate:
        """The vehicle pose estimate of one image."""
        return self.predict_batch([image_bgr], [stamp_ns])[0]


def read_model_info(model_path: str | Path) -> PoseNetModelInfo:
    """The metadata of an exported model (a CPU session without graph optimisation reads it)."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=[CPU])
    except _ORT_LOAD_ERRORS as exc:
        raise ModelFormatError(f"{path}: onnxruntime cannot load the model: {exc}") from None
    return PoseNetModelInfo.from_metadata_props(dict(session.get_modelmeta().custom_metadata_map), str(path))
