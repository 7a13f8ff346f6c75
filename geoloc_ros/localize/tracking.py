"""The localizer's memory between frames: a motion prior, a prediction, and when tracking is lost.

Every accepted pose updates two small Kalman filters (:class:`MotionTracker`), each weighing the pose
by its own covariance, so that a noisy pose moves the track by what it is worth:

- **position**: ``base_link``'s position and velocity in ``map`` (x, y, z, vx, vy, vz); between
  poses the velocity turns with the yaw rate (a vehicle's velocity follows its heading), and a
  white acceleration (``TrackingConfig.acceleration_sigma_mps2``, each axis) plus the yaw rate's own
  uncertainty make the process noise;
- **heading**: yaw and yaw rate, with a white yaw acceleration
  (``TrackingConfig.yaw_acceleration_sigma_radps2``).

At the first pose of a track the velocity is unknown (``TrackingConfig.initial_speed_sigma_mps``);
it then comes from all poses since, each by its weight, instead of from the last two (0.05 s apart at
20 Hz, where one pose that steps 0.9 m when the panoramas used switch made an 18 m/s velocity
error). A pose whose innovation lies beyond ``TrackingConfig.innovation_gate_probability`` (a χ²
probability) has its covariance scaled up by how far beyond the gate it lies, so it still pulls the
track, less than it would unscaled (early in a track, while the prediction is far less certain than
the pose, somewhat more than a pose on the gate would); after ``TrackingConfig.max_gated_updates``
such poses in a row the track, not the poses, is taken to be wrong and restarts from the last one.

The prediction at the next frame's stamp (the filters' mean, roll and pitch from the last pose)
chooses the candidate views while tracking and gates the next pose (a pose far from it is a wrong
one); its ``sigma_m`` is the worst horizontal standard deviation of the predicted position.
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
from geoloc_ros.geometry.covariance import chi2_quantile, worst_horizontal_sigma
from geoloc_ros.geometry.pose import Pose3D, rotation_from_ypr
from geoloc_ros.localize.config import TrackingConfig

_NS = 1e-9
# A pose without covariance (an exact test pose) still needs a non-singular innovation.
_MIN_POSITION_VARIANCE = 1e-6  # (1 mm)^2
_MIN_YAW_VARIANCE = 1e-8  # (0.1 mrad)^2
_YAW_RATE_PRIOR_SIGMA = 1.0  # rad/s at the first pose: any yaw rate a road vehicle has


def ypr_of(rotation: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (intrinsic Z-Y-X, as :meth:`Pose3D.ypr`) straight from the matrix: the
    per-frame path calls this often and scipy's general conversion costs far more."""
    r = np.asarray(rotation, dtype=float)
    pitch = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    return float(np.arctan2(r[1, 0], r[0, 0])), pitch, float(np.arctan2(r[2, 1], r[2, 2]))


@dataclass(frozen=True)
class Prediction:
    """Predicted ``T_map_base`` at ``stamp_ns``; ``age_s`` since the last pose; ``has_velocity``
    once the track has two poses; ``sigma_m`` the worst horizontal standard deviation of the
    predicted position (the motion prior's covariance)."""

    stamp_ns: int
    pose: Pose3D
    age_s: float
    has_velocity: bool
    sigma_m: float = 0.0


@dataclass(frozen=True)
class _Track:
    """The filters' state after the pose at ``stamp_ns`` (immutable: replaced, never modified)."""

    stamp_ns: int
    last: Pose3D  # the last accepted pose (roll and pitch of the prediction)
    x: np.ndarray  # (6,) x, y, z, vx, vy, vz
    p: np.ndarray  # (6, 6)
    yaw: np.ndarray  # (2,) yaw, yaw rate
    p_yaw: np.ndarray  # (2, 2)
    n_poses: int
    n_gated: int  # consecutive poses beyond the innovation gate


def _position_transition(omega: float, dt: float) -> np.ndarray:
    """Constant speed along a heading turning at ``omega``: the velocity rotates by ``omega * dt``
    and the position follows the arc (straight for ``omega`` near 0); z moves at vz."""
    a = omega * dt
    if abs(a) < 1e-6:
        s_over, c_over = dt, 0.5 * omega * dt * dt
    else:
        s_over, c_over = np.sin(a) / omega, (1.0 - np.cos(a)) / omega
    c, s = np.cos(a), np.sin(a)
    f = np.eye(6)
    f[0:2, 3:5] = [[s_over, -c_over], [c_over, s_over]]
    f[2, 5] = dt
    f[3:5, 3:5] = [[c, -s], [s, c]]
    return f


def _white_acceleration(sigma: float, dt: float) -> np.ndarray:
    """Process noise of a constant-velocity axis pair (position, velocity) under white acceleration."""
    return sigma**2 * np.array([[dt**3 / 3.0, dt**2 / 2.0], [dt**2 / 2.0, dt]])


class MotionTracker:
    """Kalman filters over the accepted poses; counts consecutive failures (see the module docstring).

    The state is replaced, never modified in place, so another thread may call :meth:`predict`
    (the offline pipeline guesses the next frame's needs) while this one updates it.
    """

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self.max_prior_age_s = config.max_prior_age_s
        self.max_failures = config.max_failures
        self._gate_position = chi2_quantile(config.innovation_gate_probability, 2)
        self._gate_yaw = chi2_quantile(config.innovation_gate_probability, 1)
        self._track: _Track | None = None
        self._last_fix: tuple[int, Pose3D, float] | None = None
        self.failures = 0

    def reset(self) -> None:
        self._track = None
        self._last_fix = None
        self.failures = 0

    def last_fix(self) -> tuple[int, Pose3D, float] | None:
        """``(stamp_ns, T_map_base, sigma_m)`` of the last accepted pose, even after tracking was lost
        (None after :meth:`reset` or before any pose); ``sigma_m`` its own worst horizontal σ."""
        return self._last_fix

    @property
    def last_stamp_ns(self) -> int | None:
        track = self._track
        return track.stamp_ns if track is not None else None

    # ------------------------------------------------------------------------------ filters
    def _propagate(self, track: _Track, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Both filters' mean and covariance ``dt`` seconds after ``track``."""
        cfg = self.config
        f_yaw = np.array([[1.0, dt], [0.0, 1.0]])
        yaw = f_yaw @ track.yaw
        p_yaw = f_yaw @ track.p_yaw @ f_yaw.T + _white_acceleration(cfg.yaw_acceleration_sigma_radps2, dt)
        omega = float(track.yaw[1])
        f = _position_transition(omega, dt)
        x = f @ track.x
        q = np.zeros((6, 6))
        block = _white_acceleration(cfg.acceleration_sigma_mps2, dt)
        for axis in range(3):
            q[np.ix_([axis, axis + 3], [axis, axis + 3])] = block
        # The yaw rate is known only so well: the velocity's direction, and the arc, with it.
        speed = float(np.hypot(track.x[3], track.x[4]))
        if speed > 0.0:
            across = np.array([-track.x[4], track.x[3]]) / speed
            j = np.zeros(6)
            j[0:2] = across * speed * dt * dt / 2.0
            j[3:5] = across * speed * dt
            q += float(track.p_yaw[1, 1]) * np.outer(j, j)
        p = f @ track.p @ f.T + q
        return x, p, yaw, p_yaw

    def _start(self, stamp_ns: int, pose: Pose3D, covariance: np.ndarray) -> _Track:
        x = np.concatenate([pose.translation, np.zeros(3)])
        p = np.zeros((6, 6))
        p[:3, :3] = _position_covariance(covariance)
        p[3:, 3:] = np.eye(3) * self.config.initial_speed_sigma_mps**2
        yaw = np.array([ypr_of(pose.rotation)[0], 0.0])
        p_yaw = np.diag([_yaw_variance(covariance), _YAW_RATE_PRIOR_SIGMA**2])
        return _Track(int(stamp_ns), pose, x, p, yaw, p_yaw, 1, 0)

    def _update(self, track: _Track, stamp_ns: int, pose: Pose3D, covariance: np.ndarray) -> _Track:
        dt = (stamp_ns - track.stamp_ns) * _NS
        x, p, yaw, p_yaw = self._propagate(track, dt)
        # Position: innovation gated on the horizontal part.
        r = _position_covariance(covariance)
        nu = pose.translation - x[:3]
        s = p[:3, :3] + r
        d2 = float(nu[:2] @ np.linalg.solve(s[:2, :2], nu[:2]))
        gated = d2 > self._gate_position
        if gated:
            r = r * (d2 / self._gate_position)  # counts as a pose on the gate
            s = p[:3, :3] + r
        gain = np.linalg.solve(s, p[:3, :]).T  # P H^T S^-1 with H = [I 0]
        x = x + gain @ nu
        p = p - gain @ p[:3, :]
        # Heading.
        r_yaw = _yaw_variance(covariance)
        nu_yaw = float(wrap_angle(ypr_of(pose.rotation)[0] - yaw[0]))
        s_yaw = p_yaw[0, 0] + r_yaw
        d2_yaw = nu_yaw**2 / s_yaw
        if d2_yaw > self._gate_yaw:
            gated = True
            s_yaw = p_yaw[0, 0] + r_yaw * d2_yaw / self._gate_yaw
        gain_yaw = p_yaw[:, 0] / s_yaw
        yaw = yaw + gain_yaw * nu_yaw
        yaw[0] = wrap_angle(yaw[0])
        p_yaw = p_yaw - np.outer(gain_yaw, p_yaw[0, :])
        n_gated = track.n_gated + 1 if gated else 0
        if n_gated >= self.config.max_gated_updates:
            return self._start(stamp_ns, pose, covariance)  # the track was wrong, not the poses
        return _Track(
            int(stamp_ns), pose, x, 0.5 * (p + p.T), yaw, 0.5 * (p_yaw + p_yaw.T), track.n_poses + 1, n_gated
        )

    # ------------------------------------------------------------------------------ interface
    def predict(self, stamp_ns: int) -> Prediction | None:
        """The pose at ``stamp_ns``, or None when tracking is lost (no recent pose)."""
        track = self._track
        if track is None:
            return None
        age = (stamp_ns - track.stamp_ns) * _NS
        if age < 0 or age > self.max_prior_age_s:
            return None
        x, p, yaw, _ = self._propagate(track, age)
        last_yaw = ypr_of(track.last.rotation)[0]
        rotation = rotation_from_ypr(float(wrap_angle(yaw[0] - last_yaw))) @ track.last.rotation
        sigma = worst_horizontal_sigma(p)
        return Prediction(stamp_ns, Pose3D(rotation, x[:3]), age, track.n_poses >= 2, sigma)

    def accept(self, stamp_ns: int, pose: Pose3D, covariance: np.ndarray | None = None) -> None:
        """A new pose with its 6x6 covariance over (x, y, z, rot x, rot y, rot z) (None: exact)."""
        cov = np.zeros((6, 6)) if covariance is None else np.asarray(covariance, dtype=float)
        if cov.shape != (6, 6):
            raise ValueError(
                f"a pose's covariance must be 6x6 (x, y, z, rot x, rot y, rot z), got {cov.shape}"
            )
        track = self._track
        if track is None or not 0 < (stamp_ns - track.stamp_ns) * _NS <= self.max_prior_age_s:
            track = self._start(stamp_ns, pose, cov)  # a new track (also when time went backwards)
        else:
            track = self._update(track, stamp_ns, pose, cov)
        self._track = track
        sigma = worst_horizontal_sigma(cov)
        self._last_fix = (int(stamp_ns), pose, sigma)
        self.failures = 0

    def miss(self) -> None:
        """A frame without a pose; after ``max_failures`` in a row the track is dropped."""
        self.failures += 1
        if self.failures >= self.max_failures:
            self._track = None

    @property
    def velocity_xy(self) -> np.ndarray | None:
        """Horizontal velocity (m/s, ``map``) of the track, once it has two poses."""
        track = self._track
        if track is None or track.n_poses < 2:
            return None
        return np.asarray(track.x[3:5], dtype=float).copy()


def _position_covariance(covariance: np.ndarray) -> np.ndarray:
    return np.asarray(covariance[:3, :3], dtype=float) + np.eye(3) * _MIN_POSITION_VARIANCE


def _yaw_variance(covariance: np.ndarray) -> float:
    return max(float(covariance[5, 5]), 0.0) + _MIN_YAW_VARIANCE
