"""Frame conventions (REP-103/105) and the camera mounting on the vehicle.

- ``map``: ENU tangent plane at the map bundle's origin.
- ``base_link``: the vehicle; x forward, y left, z up. In our drive bags it coincides with the
  RTK antenna frame, so a localized ``base_link`` pose compares directly with the RTK fix.
- ``<camera>_optical``: z forward, x right, y down (OpenCV / REP-103 optical convention).

A camera "body" frame follows the vehicle convention (x forward, y left, z up); its mounting is
given as translation + yaw/pitch/roll from ``base_link`` (positive pitch looks down, REP-103).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from geoloc_ros.config import StrictModel, load_yaml
from geoloc_ros.geometry.pose import Pose3D

# Columns are the optical axes (x right, y down, z forward) expressed in the body frame.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_BODY_OPTICAL = Pose3D(R_BODY_OPTICAL, np.zeros(3))


def optical_pose_from_body(t_parent_body: Pose3D) -> Pose3D:
    """``T_parent_optical`` of a camera whose body frame (x forward, z up) is at ``t_parent_body``."""
    return t_parent_body.compose(T_BODY_OPTICAL)


def body_pose_from_optical(t_parent_optical: Pose3D) -> Pose3D:
    """Inverse of :func:`optical_pose_from_body`."""
    return t_parent_optical.compose(T_BODY_OPTICAL.inverse())


class CameraMounting(StrictModel):
    """Where the camera sits on the vehicle (``base_link`` = RTK antenna frame).

    Stored as YAML next to drive bags::

        parent_frame: base_link
        camera_frame: camera_optical
        translation: [1.2, 0.0, -0.3]   # metres, base_link axes
        yaw_deg: 0.0
        pitch_deg: 2.0                   # positive looks down
        roll_deg: 0.0
    """

    parent_frame: str = "base_link"
    camera_frame: str = "camera_optical"
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_deg: float = Field(0.0, ge=-180.0, le=180.0)
    pitch_deg: float = Field(0.0, ge=-90.0, le=90.0)
    roll_deg: float = Field(0.0, ge=-180.0, le=180.0)

    def base_to_optical(self) -> Pose3D:
        """``T_base_optical``: maps optical-frame points into ``base_link``."""
        body = Pose3D.from_xyz_ypr(
            self.translation,
            np.deg2rad(self.yaw_deg),
            np.deg2rad(self.pitch_deg),
            np.deg2rad(self.roll_deg),
        )
        return optical_pose_from_body(body)

    @classmethod
    def load(cls, path: str | Path) -> CameraMounting:
        return load_yaml(path, cls)
