"""Exceptions of the fusion filter.

Bad measurements (NaN, non-PSD covariance, wrong frame) never raise out of the filter: they are
rejected with a counted reason. These exceptions are for programming errors (asking for GPS
fusion without a map origin) and for the measurement validators used inside the filter.
"""

from geoloc_ros.errors import GeolocError


class FusionError(GeolocError):
    """The fusion filter was used in a way it does not support; the message says how."""


class InvalidMeasurementError(FusionError, ValueError):
    """A measurement cannot be fused; ``reason`` is the counted rejection reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
