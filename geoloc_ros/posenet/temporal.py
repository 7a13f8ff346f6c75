"""Video localization: a temporal model over per-frame PoseNet estimates (numpy only).

Per-frame PoseNet outputs are noisy but a vehicle moves smoothly, so the sequence is filtered with
a constant-turn-rate-and-velocity (CTRV) extended Kalman filter over ``(x, y, yaw, v, yaw_rate)``,
``v`` the signed speed along the heading. The vehicle model ties the heading to the direction of
travel, so the position track also corrects the heading. Each frame's measurement covariance is
the one PoseNet predicts (times ``measurement_covariance_scale``, plus a floor); an innovation
outside the chi-square gate is rejected as an outlier, and after ``reset_after_rejections``
consecutive rejections (the filter is lost) or a gap longer than ``max_gap_s`` it restarts from the
current frame.

- online / causal (the ``posenet_localizer`` node): :class:`CausalPoseFilter`, one output per
  input, using only the past;
- offline / bidirectional: :func:`smooth_sequence`, the forward filter followed by a
  Rauch-Tung-Striebel backward pass (extended, with the stored Jacobians) over each segment between
  restarts.

Outputs are :class:`~geoloc_ros.geometry.estimate.PoseEstimate` of ``base_link`` at the input
stamps with the filter's planar covariance (z, roll, pitch 'unknown').
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from geoloc_ros.config import GateProbability, StrictModel
from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.covariance import chi2_quantile
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_POSENET_TEMPORAL
from geoloc_ros.posenet.errors import TemporalError

logger = logging.getLogger(__name__)

# State layout.
X, Y, YAW, V, W = range(5)
_H = np.eye(3, 5)


class TemporalConfig(StrictModel):
    """Process and measurement noise of the CTRV filter; defaults suit a car in town."""

    # Continuous white-noise densities: the speed std grows by accel_std m/s after 1 s, etc.
    accel_std: float = Field(1.5, gt=0.0)  # m/s^(3/2)
    yaw_accel_std: float = Field(0.4, gt=0.0)  # rad/s^(3/2)
    # Extra random walk for what CTRV ignores (side slip, antenna lever arm).
    position_walk_std: float = Field(0.1, ge=0.0)  # m/s^(1/2)
    yaw_walk_std: float = Field(0.01, ge=0.0)  # rad/s^(1/2)
    # Predicted covariances are multiplied by this and the floors are added in quadrature.
    measurement_covariance_scale: float = Field(1.0, gt=0.0)
    min_position_std_m: float = Field(0.3, ge=0.0)
    min_heading_std_deg: float = Field(1.0, ge=0.0)
    # Share of a frame's measurement covariance that does not average out over consecutive frames:
    # PoseNet's errors at one place are mostly a bias, so filtering shrinks the noise but not them.
    # It is added to the filter's covariance on output, so the published ellipse stays honest
    # (0 treats the errors as white; on the demo drive that left 85 % of true positions outside
    # the 95 % ellipse).
    correlated_error_share: float = Field(0.8, ge=0.0, le=1.0)
    # Unknown speed and yaw rate at (re)start: zero mean with these standard deviations.
    init_speed_std_mps: float = Field(10.0, gt=0.0)
    init_yaw_rate_std_dps: float = Field(30.0, gt=0.0)
    gate_probability: GateProbability = 0.999
    reset_after_rejections: int = Field(10, ge=1)
    max_gap_s: float = Field(2.0, gt=0.0)
    # Long predictions are split into steps of at most this length.
    max_step_s: float = Field(0.1, gt=0.0, le=1.0)
    source: str = Field(SOURCE_POSENET_TEMPORAL, min_length=1)


def ctrv_step(state: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Propagate ``state`` by ``dt`` (midpoint heading) and return it with its Jacobian."""
    x, y, yaw, v, w = state
    mid = yaw + 0.5 * w * dt
    c, s = np.cos(mid), np.sin(mid)
    new = np.array([x + v * dt * c, y + v * dt * s, yaw + w * dt, v, w])
    jac = np.eye(5)
    jac[X, YAW], jac[X, V], jac[X, W] = -v * dt * s, dt * c, -0.5 * v * dt * dt * s
    jac[Y, YAW], jac[Y, V], jac[Y, W] = v * dt * c, dt * s, 0.5 * v * dt * dt * c
    jac[YAW, W] = dt
    return new, jac


def ctrv_noise(state: np.ndarray, dt: float, config: TemporalConfig) -> np.ndarray:
    """Discrete process noise of piecewise-constant accelerations over ``dt`` plus random walks."""
    yaw = state[YAW]
    g = np.zeros((5, 2))
    g[X, 0], g[Y, 0] = 0.5 * dt * dt * np.cos(yaw), 0.5 * dt * dt * np.sin(yaw)
    g[YAW, 1] = 0.5 * dt * dt
    g[V, 0], g[W, 1] = dt, dt
    # A white density q over dt is a constant acceleration of variance q / dt.
    q = g @ np.diag([config.accel_std**2 / dt, config.yaw_accel_std**2 / dt]) @ g.T
    q[X, X] += config.position_walk_std**2 * dt
    q[Y, Y] += config.position_walk_std**2 * dt
    q[YAW, YAW] += config.yaw_walk_std**2 * dt
    return q


@dataclass
class _Step:
    """What one frame left behind: enough for the output and for the smoother."""

    stamp_ns: int
    x_pred: np.ndarray
    p_pred: np.ndarray
    jacobian: np.ndarray  # from the previous filtered state to x_pred
    x_filt: np.ndarray
    p_filt: np.ndarray
    accepted: bool
    nis: float
    restarted: bool
    correlated_cov: np.ndarray  # added to the output covariance (see correlated_error_share)


class CausalPoseFilter:
    """Online CTRV filter over per-frame estimates; ``update`` returns the filtered estimate."""

    def __init__(self, config: TemporalConfig | None = None, keep_history: bool = False) -> None:
        self.config = config or TemporalConfig()
        self.keep_history = keep_history
        self.history: list[_Step] = []
        self._gate = chi2_quantile(self.config.gate_probability, 3)
        self._correlated = np.zeros((3, 3))
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._p: np.ndarray | None = None
        self._stamp_ns: int | None = None
        self._rejections = 0

    @property
    def initialized(self) -> bool:
        return self._x is not None

    def _measurement(self, estimate: PoseEstimate) -> tuple[np.ndarray, np.ndarray] | None:
        z = np.array([estimate.position[0], estimate.position[1], estimate.yaw], dtype=float)
        r = np.asarray(estimate.planar_covariance, dtype=float) * self.config.measurement_covariance_scale
        r = r + np.diag(
            [self.config.min_position_std_m**2] * 2 + [np.deg2rad(self.config.min_heading_std_deg) ** 2]
        )
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(r))):
            return None
        return z, 0.5 * (r + r.T)

    def _start(self, z: np.ndarray, r: np.ndarray) -> None:
        self._x = np.array([z[0], z[1], z[2], 0.0, 0.0])
        p = np.zeros((5, 5))
        p[:3, :3] = r
        p[V, V] = self.config.init_speed_std_mps**2
        p[W, W] = np.deg2rad(self.config.init_yaw_rate_std_dps) ** 2
        self._p = p
        self._rejections = 0

    def _predict(self, dt: float) -> np.ndarray:
        """Advance the state by ``dt`` in steps of at most ``max_step_s``; return the overall Jacobian."""
        assert self._x is not None and self._p is not None
        jac_total = np.eye(5)
        n = max(1, int(np.ceil(dt / self.config.max_step_s))) if dt > 0 else 0
        for _ in range(n):
            step = dt / n
            q = ctrv_noise(self._x, step, self.config)
            self._x, jac = ctrv_step(self._x, step)
            self._p = jac @ self._p @ jac.T + q
            jac_total = jac @ jac_total
        return jac_total

    def update(self, estimate: PoseEstimate) -> PoseEstimate:
        """Fold in one per-frame estimate and return the filtered pose at its stamp."""
        stamp = int(estimate.stamp_ns)
        measurement = self._measurement(estimate)
        if measurement is not None:
            self._correlated = self.config.correlated_error_share * measurement[1]
        restarted = False
        if self._stamp_ns is not None and stamp < self._stamp_ns:
            logger.warning(
                "stamp went backwards by %.3f s: restarting the temporal filter",
                (self._stamp_ns - stamp) * 1e-9,
            )
            self.reset()
        gap_s = (stamp - self._stamp_ns) * 1e-9 if self._stamp_ns is not None else 0.0
        if self.initialized and gap_s > self.config.max_gap_s:
            self.reset()
        if not self.initialized:
            if measurement is None:
                raise TemporalError(f"estimate at {stamp} ns is not finite and the filter has no state yet")
            self._start(*measurement)
            restarted = True
            assert self._x is not None and self._p is not None
            step = _Step(
                stamp,
                self._x.copy(),
                self._p.copy(),
                np.eye(5),
                self._x.copy(),
                self._p.copy(),
                True,
                0.0,
                True,
                self._correlated,
            )
        else:
            jac = self._predict(gap_s)
            assert self._x is not None and self._p is not None
            x_pred, p_pred = self._x.copy(), self._p.copy()
            accepted, nis = False, float("nan")
            if measurement is not None:
                z, r = measurement
                innovation = z - _H @ self._x
                innovation[2] = float(wrap_angle(innovation[2]))
                s = _H @ self._p @ _H.T + r
                nis = float(innovation @ np.linalg.solve(s, innovation))
                if nis <= self._gate:
                    gain = np.linalg.solve(s, _H @ self._p).T
                    self._x = self._x + gain @ innovation
                    i_kh = np.eye(5) - gain @ _H
                    self._p = i_kh @ self._p @ i_kh.T + gain @ r @ gain.T  # Joseph form
                    accepted = True
                    self._rejections = 0
                else:
                    self._rejections += 1
            if (
                not accepted
                and self._rejections >= self.config.reset_after_rejections
                and measurement is not None
            ):
                logger.info("temporal filter lost (%d rejections in a row): restarting", self._rejections)
                self._start(*measurement)
                restarted, accepted = True, True
                x_pred, p_pred, jac = self._x.copy(), self._p.copy(), np.eye(5)
            step = _Step(
                stamp,
                x_pred,
                p_pred,
                jac,
                self._x.copy(),
                self._p.copy(),
                accepted,
                nis,
                restarted,
                self._correlated,
            )
        self._stamp_ns = stamp
        if self.keep_history:
            self.history.append(step)
        return self._output(stamp, step.x_filt, step.p_filt, step)

    def _output(
        self, stamp: int, x: np.ndarray, p: np.ndarray, step: _Step, smoothed: bool = False
    ) -> PoseEstimate:
        cov = p[:3, :3] + step.correlated_cov
        info = {
            "accepted": step.accepted,
            "nis": step.nis,
            "restarted": step.restarted,
            "speed_mps": float(x[V]),
            "yaw_rate_rps": float(x[W]),
            "smoothed": smoothed,
        }
        return PoseEstimate.planar(
            stamp,
            float(x[X]),
            float(x[Y]),
            float(wrap_angle(x[YAW])),
            0.5 * (cov + cov.T),
            source=self.config.source,
            info=info,
        )


def _check_sequence(estimates: Sequence[PoseEstimate]) -> None:
    stamps = np.array([e.stamp_ns for e in estimates], dtype=np.int64)
    if np.any(np.diff(stamps) < 0):
        k = int(np.flatnonzero(np.diff(stamps) < 0)[0])
        raise TemporalError(
            f"stamps must not decrease: estimate {k + 1} ({stamps[k + 1]} ns) is before {stamps[k]} ns"
        )


def filter_sequence(
    estimates: Sequence[PoseEstimate], config: TemporalConfig | None = None
) -> list[PoseEstimate]:
    """Causal filtering of a whole sequence (what the online node would have published)."""
    _check_sequence(estimates)
    kf = CausalPoseFilter(config)
    return [kf.update(e) for e in estimates]


def smooth_sequence(
    estimates: Sequence[PoseEstimate], config: TemporalConfig | None = None
) -> list[PoseEstimate]:
    """Bidirectional (offline) estimates: forward filter, then an RTS backward pass per segment."""
    _check_sequence(estimates)
    kf = CausalPoseFilter(config, keep_history=True)
    for e in estimates:
        kf.update(e)
    steps = kf.history
    n = len(steps)
    xs = [s.x_filt.copy() for s in steps]
    ps = [s.p_filt.copy() for s in steps]
    for k in range(n - 2, -1, -1):
        nxt = steps[k + 1]
        if nxt.restarted:
            continue  # a restart cuts the chain: segment k ends here
        gain = np.linalg.solve(nxt.p_pred.T, (steps[k].p_filt @ nxt.jacobian.T).T).T
        diff = xs[k + 1] - nxt.x_pred
        diff[YAW] = float(wrap_angle(diff[YAW]))
        xs[k] = steps[k].x_filt + gain @ diff
        ps[k] = steps[k].p_filt + gain @ (ps[k + 1] - nxt.p_pred) @ gain.T
        ps[k] = 0.5 * (ps[k] + ps[k].T)
    return [kf._output(steps[k].stamp_ns, xs[k], ps[k], steps[k], smoothed=True) for k in range(n)]
