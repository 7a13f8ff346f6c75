from geoloc_ros.errors import GeolocError


class CameraModelError(GeolocError, ValueError):
    """An invalid or unsupported camera model (bad K, unknown distortion model, bad size)."""
