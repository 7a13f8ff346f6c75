"""What an exported PoseNet ONNX file carries besides its weights (torch-free).

The ONNX ``metadata_props`` hold one entry, key :data:`METADATA_KEY`, whose value is the JSON of
:class:`ModelMetadata`. With it, inference needs only the ``.onnx`` file: input size and
normalisation, the output layout, the pose normalisation, the training camera and the frames.

Graph interface (fixed for format version 1):

- input ``image``: float32 ``(N, 3, H, W)``, RGB, ``pixel / 255`` then ``(x - mean) / std``;
- output ``pose``: float32 ``(N, 4)`` = ``(x_n, y_n, cos yaw, sin yaw)`` for ``dof=3`` or
  ``(N, 7)`` = ``(x_n, y_n, z_n, qx, qy, qz, qw)`` for ``dof=6`` (camera body frame in ``map``,
  normalised positions; see :mod:`geoloc_ros.posenet.targets`);
- output ``log_var``: float32 ``(N, 2)`` = ``(position, rotation)`` log-variances.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, ValidationError

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel, format_validation_error
from geoloc_ros.errors import GeolocError
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.posenet.errors import ModelFormatError, ModelMapMismatchError
from geoloc_ros.posenet.preprocess import InputSpec
from geoloc_ros.posenet.targets import PoseNormalization

METADATA_KEY = "geoloc_ros.posenet"
FORMAT_VERSION = 1
INPUT_NAME = "image"
POSE_OUTPUT = "pose"
LOG_VAR_OUTPUT = "log_var"
POSE_FIELDS = {
    3: ["x_n", "y_n", "cos_yaw", "sin_yaw"],
    6: ["x_n", "y_n", "z_n", "qx", "qy", "qz", "qw"],
}
LOG_VAR_FIELDS = ["position", "rotation"]
FRAMES_NOTE = (
    "pose = camera body frame (x forward, y left, z up) in map (ENU); "
    "position = pose[:npos] * position_scale + position_mean"
)


class InputMetadata(StrictModel):
    width: int = Field(gt=15)
    height: int = Field(gt=15)
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    pixel_scale: float = 1.0 / 255.0
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class NormalizationMetadata(StrictModel):
    position_mean: list[float]
    position_scale: float = Field(gt=0.0)


class VarianceScaleMetadata(StrictModel):
    """Calibration factors of the predicted (position, rotation) variances."""

    position: float = Field(1.0, gt=0.0)
    rotation: float = Field(1.0, gt=0.0)


class OriginMetadata(StrictModel):
    """WGS84 origin of the ``map`` frame the model's positions are expressed in."""

    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)
    alt: float = 0.0


# How the weights are stored and the arithmetic done: ``fp32``; ``fp16`` (float16 weights and
# arithmetic, for GPUs); ``fp16-weights`` (float16 weights cast to float32 when the session loads:
# half the file of ``fp32``, its speed and arithmetic on a CPU, where float16 convolutions are slower).
Precision = Literal["fp32", "fp16", "fp16-weights"]


class ModelMetadata(StrictModel):
    """Schema of the JSON stored under :data:`METADATA_KEY`."""

    format_version: int = FORMAT_VERSION
    dof: Literal[3, 6]
    input: InputMetadata
    outputs: dict[str, list[str]]
    normalization: NormalizationMetadata
    variance_scale: VarianceScaleMetadata = Field(default_factory=VarianceScaleMetadata)
    camera: dict[str, Any] = Field(description="training-view camera, ROS calibration mapping")
    backbone: str
    precision: Precision = "fp32"
    frames: str = FRAMES_NOTE
    geoloc_ros_version: str = ""
    training: dict[str, Any] = Field(default_factory=dict)
    # The map frame's origin (from the map bundle the model was trained on); None when unknown.
    map_origin: OriginMetadata | None = None
    # MapBundle.bundle_id of that map; None for models exported before it was recorded.
    map_id: str | None = None


class PoseNetModelInfo:
    """Parsed, validated metadata of a PoseNet model."""

    def __init__(self, metadata: ModelMetadata, source: str = "model") -> None:
        if metadata.format_version != FORMAT_VERSION:
            raise ModelFormatError(
                f"{source}: PoseNet format version {metadata.format_version} is not supported "
                f"(this build reads version {FORMAT_VERSION})"
            )
        expected = {POSE_OUTPUT: POSE_FIELDS[metadata.dof], LOG_VAR_OUTPUT: LOG_VAR_FIELDS}
        if metadata.outputs != expected:
            raise ModelFormatError(f"{source}: output layout {metadata.outputs} differs from {expected}")
        self.metadata = metadata
        self.source = source
        try:
            self.input_spec = InputSpec(
                metadata.input.width, metadata.input.height, metadata.input.mean, metadata.input.std
            )
            self.normalization = PoseNormalization(
                metadata.dof,
                tuple(metadata.normalization.position_mean),
                metadata.normalization.position_scale,
            )
            self.camera = PinholeCamera.from_dict(metadata.camera, f"{source}: camera")
        except GeolocError as exc:
            raise ModelFormatError(f"{source}: invalid PoseNet metadata: {exc}") from None

    @property
    def dof(self) -> int:
        return self.metadata.dof

    @property
    def precision(self) -> str:
        return self.metadata.precision

    @property
    def map_origin(self) -> GeoOrigin | None:
        """Origin of the ``map`` frame of the model's outputs, when the training data gave one."""
        o = self.metadata.map_origin
        return None if o is None else GeoOrigin(o.lat, o.lon, o.alt)

    def check_map(
        self, map_id: str, map_origin: GeoOrigin, map_name: str, allow_mismatch: bool = False
    ) -> str:
        """Refuse (:class:`ModelMapMismatchError`, naming both) a map other than the one the model was
        trained on: another bundle id, or another origin (``geo.enu.SAME_ORIGIN_TOLERANCE_M``). Returns
        a note for the log; with ``allow_mismatch`` (experts) a mismatch is only that note."""
        problems = []
        if self.metadata.map_id is not None and self.metadata.map_id != map_id:
            problems.append(f"map id {self.metadata.map_id} vs {map_id}")
        origin = self.map_origin
        if origin is not None and not origin.same_frame(map_origin):
            problems.append(
                f"origin ({origin.lat_deg:.6f}, {origin.lon_deg:.6f}) vs "
                f"({map_origin.lat_deg:.6f}, {map_origin.lon_deg:.6f})"
            )
        if problems:
            message = (
                f"PoseNet model {self.source} was trained on another map than {map_name} "
                f"({'; '.join(problems)}): its poses would be in another frame or town"
            )
            if not allow_mismatch:
                raise ModelMapMismatchError(message + " (allow_map_mismatch overrides this)")
            return message + " (allowed by allow_map_mismatch)"
        if self.metadata.map_id is None:
            return f"PoseNet model {self.source} records no map id: only its origin was checked ({map_name})"
        return f"PoseNet model {self.source} was trained on {map_name} (map id {map_id})"

    @property
    def variance_scale(self) -> tuple[float, float]:
        """Factors applied to the decoded (position, rotation) variances."""
        return (self.metadata.variance_scale.position, self.metadata.variance_scale.rotation)

    @classmethod
    def build(
        cls,
        input_spec: InputSpec,
        normalization: PoseNormalization,
        camera: PinholeCamera,
        backbone: str,
        precision: Precision = "fp32",
        training: dict[str, Any] | None = None,
        variance_scale: tuple[float, float] = (1.0, 1.0),
        map_origin: GeoOrigin | None = None,
        map_id: str | None = None,
    ) -> PoseNetModelInfo:
        from geoloc_ros import __version__

        metadata = ModelMetadata(
            dof=normalization.dof,
            input=InputMetadata(
                width=input_spec.width,
                height=input_spec.height,
                mean=input_spec.mean_rgb,
                std=input_spec.std_rgb,
            ),
            outputs={POSE_OUTPUT: POSE_FIELDS[normalization.dof], LOG_VAR_OUTPUT: LOG_VAR_FIELDS},
            normalization=NormalizationMetadata(
                position_mean=list(normalization.position_mean), position_scale=normalization.position_scale
            ),
            variance_scale=VarianceScaleMetadata(position=variance_scale[0], rotation=variance_scale[1]),
            camera=camera.to_dict("posenet_training_views"),
            backbone=backbone,
            precision=precision,
            geoloc_ros_version=__version__,
            training=dict(training or {}),
            map_origin=None if map_origin is None else OriginMetadata(**map_origin.to_dict()),
            map_id=map_id,
        )
        return cls(metadata)

    def to_json(self) -> str:
        return json.dumps(self.metadata.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> PoseNetModelInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{source}: metadata {METADATA_KEY!r} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ModelFormatError(f"{source}: metadata {METADATA_KEY!r} must be a JSON object")
        try:
            return cls(ModelMetadata.model_validate(data), source)
        except ValidationError as exc:
            raise ModelFormatError(format_validation_error(exc, f"{source}: {METADATA_KEY}")) from None

    @classmethod
    def from_metadata_props(cls, props: dict[str, str], source: str = "model") -> PoseNetModelInfo:
        """From an ONNX file's ``metadata_props`` (as onnxruntime's ``custom_metadata_map`` gives them)."""
        if METADATA_KEY not in props:
            raise ModelFormatError(
                f"{source}: not a geoloc_ros PoseNet model (no {METADATA_KEY!r} metadata; "
                f"export it with 'geoloc posenet export')"
            )
        return cls.from_json(props[METADATA_KEY], source)
