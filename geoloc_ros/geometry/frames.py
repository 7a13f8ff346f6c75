"""Frame conventions (REP-103/105) and the camera mounting on the vehicle.

- ``map``: ENU tangent plane at the map bundle's origin.
- ``base_link``: the vehicle; x forward, y left, z up. In our drive bags it coincides with the
  RTK antenna frame, so a localized ``base_link`` pose compares directly with the RTK fix.
- ``<camera>_optical``: z forward, x right, y down (OpenCV / REP-103 optical convention).

A camera "body" frame follows the vehicle convention (x forward, y left, z up); its mounting is
given as translation + yaw/pitch/roll from ``base_link`` (positive pitch looks down, REP-103).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from geoloc_ros.config import StrictModel, load_yaml
from geoloc_ros.errors import ConfigError
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


# ------------------------------------------------------------------------------------------ extrinsics
OPTICAL_SUFFIXES = ("_optical", "_optical_frame")
ExtrinsicsSource = Literal["yaml", "tf"]


def is_optical_frame(frame_id: str) -> bool:
    """REP-103: camera frames named ``*_optical`` / ``*_optical_frame`` have z forward, x right, y down."""
    return frame_id.rstrip("/").endswith(OPTICAL_SUFFIXES)


def base_to_optical_from_transform(t_base_frame: Pose3D, frame_id: str) -> Pose3D:
    """``T_base_optical`` from a TF transform ``base -> frame_id``: the image's frame is the optical frame
    when its name says so (REP-103), else a camera body frame (x forward, z up) whose optical frame is
    the standard rotation of it."""
    return t_base_frame if is_optical_frame(frame_id) else optical_pose_from_body(t_base_frame)


class ExtrinsicsResolver:
    """Where the camera sits on the vehicle, from TF or the mounting YAML (ROS-free; the node supplies
    ``lookup``, which asks tf2 for ``T_base_frame`` and returns None while it does not know it).

    - ``source="tf"``: ``base_frame -> <the image header's frame_id>`` from TF (URDF ->
      robot_state_publisher -> /tf_static); the YAML is the fallback while TF has no such transform.
    - ``source="yaml"``: the YAML (``camera_mounting``); empty = the camera at ``base_frame``.

    :meth:`resolve` returns ``T_base_optical`` once known (then cached per camera frame) or raises
    :class:`ConfigError` saying what is missing.
    """

    def __init__(
        self, source: ExtrinsicsSource, yaml_path: str | Path = "", base_frame: str = "base_link"
    ) -> None:
        self.source = source
        self.base_frame = base_frame
        self.yaml_path = str(yaml_path)
        self._yaml: Pose3D | None = None
        if yaml_path:
            self._yaml = CameraMounting.load(yaml_path).base_to_optical()
        elif source == "yaml":
            self._yaml = CameraMounting().base_to_optical()
        self._resolved: dict[str, Pose3D] = {}

    @property
    def static(self) -> Pose3D | None:
        """The mounting known without TF (the YAML), if any."""
        return self._yaml

    def resolve(
        self, camera_frame: str, lookup: Callable[[str, str], Pose3D | None] | None
    ) -> tuple[Pose3D, str]:
        """``(T_base_optical, where it came from)`` for images in ``camera_frame``."""
        if self.source == "yaml":
            assert self._yaml is not None
            return self._yaml, self.yaml_path or "camera at base_link (no camera_mounting)"
        if camera_frame in self._resolved:
            return self._resolved[camera_frame], f"tf {self.base_frame} -> {camera_frame}"
        found = lookup(self.base_frame, camera_frame) if (lookup is not None and camera_frame) else None
        if found is not None:
            pose = base_to_optical_from_transform(found, camera_frame)
            self._resolved[camera_frame] = pose
            return pose, f"tf {self.base_frame} -> {camera_frame}"
        if self._yaml is not None:
            return self._yaml, f"{self.yaml_path} (no tf {self.base_frame} -> {camera_frame or '?'} yet)"
        why = "tf2_ros is not installed" if lookup is None else "TF has no such transform"
        if not camera_frame:
            why = "the image has no frame_id"
        raise ConfigError(
            f"no camera extrinsics: {why} ({self.base_frame} -> {camera_frame or '<empty frame_id>'}) and no "
            "io.camera_mounting YAML; publish the camera in TF (URDF + robot_state_publisher) or set "
            "io.camera_mounting"
        )
