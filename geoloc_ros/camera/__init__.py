"""Camera models: pinhole with ROS distortion models, CameraInfo, rectification maps."""

from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.camera.pinhole import PinholeCamera

__all__ = ["CameraModelError", "PinholeCamera"]
