from geoloc_ros.errors import GeolocError


class GeodesyError(GeolocError, ValueError):
    """Invalid geodetic input: NaN or out-of-range latitude/longitude/altitude."""
