"""A localization result: the vehicle pose in ``map`` at an image's stamp, with its covariance.

Every localizer (BoVW, PoseNet, temporal PoseNet), the fusion filter and the evaluation speak this
type; nodes convert it to ``PoseWithCovarianceStamped`` / ``NavSatFix`` at the ROS edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoloc_ros.geometry.covariance import PLANAR_INDICES, planar_to_pose_covariance
from geoloc_ros.geometry.pose import Pose2D, Pose3D


@dataclass(frozen=True)
class PoseEstimate:
    """``T_map_base`` at ``stamp_ns`` with a 6x6 covariance over (x, y, z, rot x, rot y, rot z)."""

    stamp_ns: int
    pose: Pose3D
    covariance: np.ndarray
    source: str = ""
    frame_id: str = "map"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cov = np.asarray(self.covariance, dtype=float)
        if cov.shape != (6, 6):
            raise ValueError(f"PoseEstimate covariance must be 6x6, got {cov.shape}")
        object.__setattr__(self, "covariance", cov)
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))

    @classmethod
    def planar(
        cls,
        stamp_ns: int,
        x: float,
        y: float,
        yaw: float,
        cov_xy_yaw: np.ndarray,
        z: float = 0.0,
        source: str = "",
        info: dict[str, Any] | None = None,
    ) -> PoseEstimate:
        """An estimate of (x, y, yaw) only: z, roll and pitch get the 'unknown' variance."""
        return cls(
            stamp_ns,
            Pose3D.from_xyz_ypr([x, y, z], yaw),
            planar_to_pose_covariance(cov_xy_yaw),
            source,
            info=dict(info or {}),
        )

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9

    @property
    def position(self) -> np.ndarray:
        return self.pose.translation

    @property
    def yaw(self) -> float:
        return self.pose.yaw

    def to_pose2d(self) -> Pose2D:
        return self.pose.to_pose2d()

    @property
    def planar_covariance(self) -> np.ndarray:
        """3x3 covariance of (x, y, yaw)."""
        idx = np.array(PLANAR_INDICES)
        return self.covariance[np.ix_(idx, idx)]
