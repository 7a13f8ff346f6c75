"""Rigid poses in 2D and 3D, quaternions and yaw/pitch/roll (REP-103).

Conventions: quaternions are ROS-ordered ``(x, y, z, w)``; Euler angles are intrinsic Z-Y-X
(yaw, then pitch, then roll), the REP-103 order. A pose ``T_a_b`` maps coordinates expressed in
frame ``b`` into frame ``a``: ``p_a = R @ p_b + t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from geoloc_ros.geo.heading import wrap_angle


def rotation_from_ypr(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """3x3 rotation from intrinsic Z-Y-X yaw, pitch, roll in radians."""
    return Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()


def ypr_from_rotation(rotation: npt.ArrayLike) -> tuple[float, float, float]:
    """Yaw, pitch, roll (rad, intrinsic Z-Y-X) of a 3x3 rotation."""
    yaw, pitch, roll = Rotation.from_matrix(np.asarray(rotation, dtype=float)).as_euler("ZYX")
    return float(yaw), float(pitch), float(roll)


def quaternion_from_rotation(rotation: npt.ArrayLike) -> np.ndarray:
    """ROS-ordered quaternion ``(x, y, z, w)`` of a 3x3 rotation, with ``w >= 0``."""
    q = Rotation.from_matrix(np.asarray(rotation, dtype=float)).as_quat()
    return -q if q[3] < 0 else q


def rotation_from_quaternion(q_xyzw: npt.ArrayLike) -> np.ndarray:
    """3x3 rotation of a ROS-ordered quaternion; the quaternion is normalised first."""
    q = np.asarray(q_xyzw, dtype=float)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion {q.tolist()} is not a valid rotation (zero or non-finite norm)")
    return Rotation.from_quat(q / norm).as_matrix()


def quaternion_from_yaw(yaw: float) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` of a pure rotation about z."""
    half = 0.5 * float(yaw)
    return np.array([0.0, 0.0, np.sin(half), np.cos(half)])


def yaw_from_quaternion(q_xyzw: npt.ArrayLike) -> float:
    """Yaw (rad, REP-103 Z-Y-X) of a ROS-ordered quaternion."""
    x, y, z, w = np.asarray(q_xyzw, dtype=float)
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


@dataclass(frozen=True)
class Pose2D:
    """Planar pose in the ``map`` frame: position (m) and ENU yaw (rad)."""

    x: float
    y: float
    yaw: float

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.yaw])

    def compose(self, other: Pose2D) -> Pose2D:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return Pose2D(
            self.x + c * other.x - s * other.y,
            self.y + s * other.x + c * other.y,
            float(wrap_angle(self.yaw + other.yaw)),
        )

    def inverse(self) -> Pose2D:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return Pose2D(-c * self.x - s * self.y, s * self.x - c * self.y, float(wrap_angle(-self.yaw)))


@dataclass(frozen=True)
class Pose3D:
    """Rigid transform ``T_parent_child``: ``p_parent = rotation @ p_child + translation``."""

    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=float).reshape(3, 3))
        object.__setattr__(self, "translation", np.asarray(self.translation, dtype=float).reshape(3))

    @classmethod
    def identity(cls) -> Pose3D:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_xyz_ypr(
        cls, xyz: npt.ArrayLike, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0
    ) -> Pose3D:
        return cls(rotation_from_ypr(yaw, pitch, roll), np.asarray(xyz, dtype=float))

    @classmethod
    def from_xyz_quaternion(cls, xyz: npt.ArrayLike, q_xyzw: npt.ArrayLike) -> Pose3D:
        return cls(rotation_from_quaternion(q_xyzw), np.asarray(xyz, dtype=float))

    @classmethod
    def from_matrix(cls, matrix: npt.ArrayLike) -> Pose3D:
        m = np.asarray(matrix, dtype=float)
        return cls(m[:3, :3], m[:3, 3])

    def as_matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    def compose(self, other: Pose3D) -> Pose3D:
        """``self * other``: with ``self = T_a_b`` and ``other = T_b_c`` returns ``T_a_c``."""
        return Pose3D(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def inverse(self) -> Pose3D:
        rt = self.rotation.T
        return Pose3D(rt, -rt @ self.translation)

    def transform_points(self, points: npt.ArrayLike) -> np.ndarray:
        """Map ``(N, 3)`` points from the child frame to the parent frame."""
        p = np.asarray(points, dtype=float)
        return p @ self.rotation.T + self.translation

    @property
    def quaternion(self) -> np.ndarray:
        return quaternion_from_rotation(self.rotation)

    @property
    def ypr(self) -> tuple[float, float, float]:
        return ypr_from_rotation(self.rotation)

    @property
    def yaw(self) -> float:
        return ypr_from_rotation(self.rotation)[0]

    def to_pose2d(self) -> Pose2D:
        return Pose2D(float(self.translation[0]), float(self.translation[1]), self.yaw)
