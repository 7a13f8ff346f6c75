"""Poses, rotations, covariance layouts and frame conventions."""

from geoloc_ros.geometry.frames import CameraMounting, body_pose_from_optical, optical_pose_from_body
from geoloc_ros.geometry.pose import (
    Pose2D,
    Pose3D,
    quaternion_from_rotation,
    quaternion_from_yaw,
    rotation_from_quaternion,
    rotation_from_ypr,
    yaw_from_quaternion,
    ypr_from_rotation,
)

__all__ = [
    "CameraMounting",
    "Pose2D",
    "Pose3D",
    "body_pose_from_optical",
    "optical_pose_from_body",
    "quaternion_from_rotation",
    "quaternion_from_yaw",
    "rotation_from_quaternion",
    "rotation_from_ypr",
    "yaw_from_quaternion",
    "ypr_from_rotation",
]
