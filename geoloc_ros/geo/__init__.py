"""Geodesy: WGS84 <-> local ENU, compass heading <-> ENU yaw."""

from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic, geodetic_to_enu, validate_geodetic
from geoloc_ros.geo.errors import GeodesyError
from geoloc_ros.geo.heading import angle_difference, compass_to_enu_yaw, enu_yaw_to_compass, wrap_angle

__all__ = [
    "GeoOrigin",
    "GeodesyError",
    "angle_difference",
    "compass_to_enu_yaw",
    "enu_to_geodetic",
    "enu_yaw_to_compass",
    "geodetic_to_enu",
    "validate_geodetic",
    "wrap_angle",
]
