from geoloc_ros.errors import GeolocError


class BundleError(GeolocError):
    """A map bundle cannot be written or read."""


class BundleFormatError(BundleError, ValueError):
    """Not a map bundle, or one of a format version this code does not read."""


class BundleChecksumError(BundleError, ValueError):
    """A bundle member is missing, truncated or corrupted; the message names the file."""


class MapBuildError(GeolocError):
    """The map build failed (bad inputs, no features, a failed worker); the message says which."""
