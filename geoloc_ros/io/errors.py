from geoloc_ros.errors import GeolocError


class ImageConversionError(GeolocError, ValueError):
    """An image message cannot be converted: unsupported encoding, truncated data, bad step."""


class BagError(GeolocError):
    """A rosbag2 cannot be read or written: missing topic, unknown type, bad path."""


class TrajectoryFileError(GeolocError, ValueError):
    """A trajectory file (TUM) is malformed; the message names the file and line."""
