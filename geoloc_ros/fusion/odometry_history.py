"""``map -> odom`` at the estimate's stamp (REP-105), from a short history of odometry poses.

A localizer's pose of ``base_link`` in ``map`` is for the image's stamp ``t``, and reaches fusion a latency
later, when the odometry (``odom -> base_link``) has already moved on. ``map -> odom`` must pair the two
at the same instant: ``T_map_odom = T_map_base(t) · T_odom_base(t)⁻¹``. Pairing with the *latest* odometry
instead shifts the vehicle by what it drove during the latency (≈ speed × latency: 1 m at 10 m/s and
100 ms). :class:`OdometryHistory` keeps the last ``max_age_s`` of odometry and interpolates it at ``t``
(linear in translation, spherical in rotation).
"""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from geoloc_ros.geometry.pose import Pose3D


class OdometryHistory:
    """The odometry poses ``T_odom_base`` of the last ``max_age_s``, by stamp (ns)."""

    def __init__(self, max_age_s: float = 2.0) -> None:
        self.max_age_ns = int(max_age_s * 1e9)
        self._stamps: deque[int] = deque()
        self._poses: deque[Pose3D] = deque()

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        self._stamps.clear()
        self._poses.clear()

    def add(self, stamp_ns: int, t_odom_base: Pose3D) -> None:
        """Add a pose in stamp order. A message reordered by the transport (older than the newest, still
        inside the history's span) is inserted where it belongs; only a jump back beyond the span (a bag
        loop) starts a new history, so one late message does not block ``map -> odom``."""
        if self._stamps and stamp_ns <= self._stamps[-1]:
            if self._stamps[-1] - stamp_ns > self.max_age_ns:
                self.clear()
            else:
                i = bisect.bisect_left(self._stamps, stamp_ns)
                if i < len(self._stamps) and self._stamps[i] == stamp_ns:
                    self._poses[i] = t_odom_base
                else:
                    self._stamps.insert(i, stamp_ns)
                    self._poses.insert(i, t_odom_base)
                return
        self._stamps.append(stamp_ns)
        self._poses.append(t_odom_base)
        while self._stamps and self._stamps[0] < stamp_ns - self.max_age_ns:
            self._stamps.popleft()
            self._poses.popleft()

    def at(self, stamp_ns: int) -> Pose3D | None:
        """``T_odom_base`` at ``stamp_ns``, interpolated; None outside the history (never extrapolated)."""
        if not self._stamps or stamp_ns < self._stamps[0] or stamp_ns > self._stamps[-1]:
            return None
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if self._stamps[i] == stamp_ns:
            return self._poses[i]
        t0, t1 = self._stamps[i - 1], self._stamps[i]
        p0, p1 = self._poses[i - 1], self._poses[i]
        w = (stamp_ns - t0) / (t1 - t0)
        rotations = Rotation.from_matrix(np.stack([p0.rotation, p1.rotation]))
        rotation = Slerp([0.0, 1.0], rotations)([w]).as_matrix()[0]
        return Pose3D(rotation, (1.0 - w) * p0.translation + w * p1.translation)


def map_to_odom(t_map_base: Pose3D, t_odom_base: Pose3D) -> Pose3D:
    """``T_map_odom`` from the vehicle's pose in ``map`` and in ``odom`` at the same instant."""
    return t_map_base.compose(t_odom_base.inverse())
