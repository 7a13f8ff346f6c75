"""Exceptions of the PoseNet pipeline; messages name the file, field or value at fault."""

from geoloc_ros.errors import GeolocError


class PoseNetError(GeolocError):
    """Root of the PoseNet errors."""


class DatasetError(PoseNetError, ValueError):
    """A view source or view folder is malformed (bad image, pose, group, file or field)."""


class ModelError(PoseNetError, ValueError):
    """A model configuration, backbone checkpoint or network output is invalid."""


class CheckpointError(PoseNetError):
    """A training checkpoint or run directory cannot be read, resumed or written."""


class ModelFormatError(PoseNetError, ValueError):
    """An ONNX file lacks the PoseNet metadata or carries an unsupported layout."""


class InferenceError(PoseNetError, ValueError):
    """Inference was given an unusable input (wrong dtype, shape, stamp count)."""


class TemporalError(PoseNetError, ValueError):
    """The temporal model was given an invalid sequence (stamps going backwards, bad sizes)."""


class ModelMapMismatchError(PoseNetError):
    """A PoseNet model is used with another map than the one it was trained on."""
