"""The localizer's memory between frames: the last poses, a prediction, and when tracking is lost.

A constant-velocity model in the plane (velocity of ``base_link`` in ``map`` and yaw rate, from the
last two accepted poses) predicts the pose at the next frame's stamp. The prediction chooses the
candidate views while tracking and gates the next pose (a pose far from it is a wrong one).
Tracking is lost, and the localizer re-localizes globally, when the last pose is older than
``max_prior_age_s`` or after ``max_failures`` frames in a row without a pose. The last accepted pose
is remembered beyond that (:meth:`MotionTracker.last_fix`, until :meth:`MotionTracker.reset`): a
vehicle cannot be farther from it than it can drive in the time since, which gates global
re-localizations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.pose import Pose3D, rotation_from_ypr

_NS = 1e-9


def ypr_of(rotation: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (intrinsic Z-Y-X, as :meth:`Pose3D.ypr`) straight from the matrix: the
    per-frame path calls this often and scipy's general conversion costs far more."""
    r = np.asarray(rotation, dtype=float)
    pitch = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    return float(np.arctan2(r[1, 0], r[0, 0])), pitch, float(np.arctan2(r[2, 1], r[2, 2]))


@dataclass(frozen=True)
class Prediction:
    """Predicted ``T_map_base`` at ``stamp_ns``; ``age_s`` since the pose it comes from;
    ``sigma_m`` the horizontal standard deviation the poses it comes from carry into it."""

    stamp_ns: int
    pose: Pose3D
    age_s: float
    has_velocity: bool
    sigma_m: float = 0.0


class MotionTracker:
    """Keeps the last two accepted poses and counts consecutive failures (see the module docstring).

    The history is replaced, never modified in place, so another thread may call :meth:`predict`
    (the offline pipeline guesses the next frame's needs) while this one updates it.
    """

    def __init__(self, max_prior_age_s: float, max_failures: int) -> None:
        self.max_prior_age_s = max_prior_age_s
        self.max_failures = max_failures
        self._poses: list[tuple[int, Pose3D, float]] = []
        self._last_fix: tuple[int, Pose3D, float] | None = None
        self.failures = 0

    def reset(self) -> None:
        self._poses = []
        self._last_fix = None
        self.failures = 0

    def last_fix(self) -> tuple[int, Pose3D, float] | None:
        """``(stamp_ns, T_map_base, sigma_m)`` of the last accepted pose, even after tracking was lost
        (None after :meth:`reset` or before any pose)."""
        return self._last_fix

    @property
    def last_stamp_ns(self) -> int | None:
        poses = self._poses
        return poses[-1][0] if poses else None

    def predict(self, stamp_ns: int) -> Prediction | None:
        """The pose at ``stamp_ns``, or None when tracking is lost (no recent pose)."""
        poses = self._poses
        if not poses:
            return None
        last_stamp, last, last_sigma = poses[-1]
        age = (stamp_ns - last_stamp) * _NS
        if age < 0 or age > self.max_prior_age_s:
            return None
        if len(poses) < 2:
            return Prediction(stamp_ns, last, age, has_velocity=False, sigma_m=last_sigma)
        first_stamp, first, first_sigma = poses[-2]
        span = (last_stamp - first_stamp) * _NS
        if span <= 0 or span > self.max_prior_age_s:
            return Prediction(stamp_ns, last, age, has_velocity=False, sigma_m=last_sigma)
        velocity = (last.translation - first.translation) / span
        yaw_rate = float(wrap_angle(ypr_of(last.rotation)[0] - ypr_of(first.rotation)[0])) / span
        turn = rotation_from_ypr(yaw_rate * age)
        predicted = Pose3D(turn @ last.rotation, last.translation + velocity * age)
        # Position errors of the two poses reach the extrapolation through the velocity too.
        sigma = last_sigma + (last_sigma + first_sigma) * age / span
        return Prediction(stamp_ns, predicted, age, has_velocity=True, sigma_m=sigma)

    def accept(self, stamp_ns: int, pose: Pose3D, sigma_m: float = 0.0) -> None:
        """A new pose; ``sigma_m`` its horizontal standard deviation (worst axis)."""
        kept = self._poses[-1:]
        if kept and stamp_ns <= kept[0][0]:
            kept = []  # time went backwards (a bag loop): start over from this pose
        self._poses = [*kept, (int(stamp_ns), pose, float(sigma_m))]
        self._last_fix = self._poses[-1]
        self.failures = 0

    def miss(self) -> None:
        """A frame without a pose; after ``max_failures`` in a row the history is dropped."""
        self.failures += 1
        if self.failures >= self.max_failures:
            self._poses = []

    @property
    def velocity_xy(self) -> np.ndarray | None:
        """Horizontal velocity (m/s, ``map``) between the last two accepted poses, if recent."""
        poses = self._poses
        if len(poses) < 2:
            return None
        (t0, p0, _), (t1, p1, _) = poses
        span = (t1 - t0) * _NS
        if span <= 0 or span > self.max_prior_age_s:
            return None
        return np.asarray((p1.translation[:2] - p0.translation[:2]) / span, dtype=float)

    @property
    def speed_mps(self) -> float | None:
        poses = self._poses
        if len(poses) < 2:
            return None
        (t0, p0, _), (t1, p1, _) = poses
        span = (t1 - t0) * _NS
        return float(np.linalg.norm(p1.translation[:2] - p0.translation[:2]) / span) if span > 0 else None
