"""Constant turn rate and velocity (CTRV) model over ``(x, y, yaw, v, yaw_rate)``.

The vehicle moves along a circular arc at constant speed ``v`` (m/s, along its heading) and yaw
rate ``w`` (rad/s) between measurements. Process noise is continuous white noise on the
longitudinal and yaw accelerations (integrated into speed/position and yaw rate/yaw) plus small
random walks on position and yaw; see :class:`~geoloc_ros.fusion.config.ProcessNoiseConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geoloc_ros.fusion.config import ProcessNoiseConfig
from geoloc_ros.fusion.measurements import STATE_DIM, STATE_SPEED, STATE_X, STATE_Y, STATE_YAW, STATE_YAW_RATE
from geoloc_ros.geo.heading import wrap_angle

# Below this |yaw rate| (rad/s) the straight-line expansion replaces the arc formulas, whose
# 1/w terms lose precision; the two agree to O(v w^2 dt^3) there.
_STRAIGHT_YAW_RATE = 1e-3


def ctrv_transition(state: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Propagate ``state`` by ``dt`` seconds; returns the new state and the Jacobian ``dF/dstate``."""
    x, y, yaw, v, w = state
    jac = np.eye(STATE_DIM)
    out = state.copy()
    s0, c0 = math.sin(yaw), math.cos(yaw)
    if abs(w) > _STRAIGHT_YAW_RATE:
        yaw1 = yaw + w * dt
        s1, c1 = math.sin(yaw1), math.cos(yaw1)
        out[STATE_X] = x + v / w * (s1 - s0)
        out[STATE_Y] = y + v / w * (c0 - c1)
        jac[STATE_X, STATE_YAW] = v / w * (c1 - c0)
        jac[STATE_X, STATE_SPEED] = (s1 - s0) / w
        jac[STATE_X, STATE_YAW_RATE] = v * dt * c1 / w - v * (s1 - s0) / (w * w)
        jac[STATE_Y, STATE_YAW] = v / w * (s1 - s0)
        jac[STATE_Y, STATE_SPEED] = (c0 - c1) / w
        jac[STATE_Y, STATE_YAW_RATE] = v * dt * s1 / w - v * (c0 - c1) / (w * w)
    else:
        half_dt2 = 0.5 * dt * dt
        out[STATE_X] = x + v * dt * c0 - v * w * half_dt2 * s0
        out[STATE_Y] = y + v * dt * s0 + v * w * half_dt2 * c0
        jac[STATE_X, STATE_YAW] = -v * dt * s0 - v * w * half_dt2 * c0
        jac[STATE_X, STATE_SPEED] = dt * c0 - w * half_dt2 * s0
        jac[STATE_X, STATE_YAW_RATE] = -v * half_dt2 * s0
        jac[STATE_Y, STATE_YAW] = v * dt * c0 - v * w * half_dt2 * s0
        jac[STATE_Y, STATE_SPEED] = dt * s0 + w * half_dt2 * c0
        jac[STATE_Y, STATE_YAW_RATE] = v * half_dt2 * c0
    out[STATE_YAW] = float(wrap_angle(yaw + w * dt))
    jac[STATE_YAW, STATE_YAW_RATE] = dt
    return out, jac


def process_noise(state: np.ndarray, dt: float, noise: ProcessNoiseConfig) -> np.ndarray:
    """Discrete process noise ``Q(dt)`` of the continuous white-acceleration model at ``state``."""
    q = np.zeros((STATE_DIM, STATE_DIM))
    c, s = math.cos(state[STATE_YAW]), math.sin(state[STATE_YAW])
    along = np.array([c, s])
    dt2, dt3 = dt * dt, dt * dt * dt
    qa = noise.longitudinal_accel**2
    # Integrated white acceleration along the heading: [[dt^3/3, dt^2/2], [dt^2/2, dt]] * q.
    q[:2, :2] += qa * dt3 / 3.0 * np.outer(along, along)
    q[:2, STATE_SPEED] += qa * dt2 / 2.0 * along
    q[STATE_SPEED, :2] += qa * dt2 / 2.0 * along
    q[STATE_SPEED, STATE_SPEED] += qa * dt
    qw = noise.yaw_accel**2
    q[STATE_YAW, STATE_YAW] += qw * dt3 / 3.0
    q[STATE_YAW, STATE_YAW_RATE] += qw * dt2 / 2.0
    q[STATE_YAW_RATE, STATE_YAW] += qw * dt2 / 2.0
    q[STATE_YAW_RATE, STATE_YAW_RATE] += qw * dt
    q[STATE_X, STATE_X] += noise.position**2 * dt
    q[STATE_Y, STATE_Y] += noise.position**2 * dt
    q[STATE_YAW, STATE_YAW] += noise.yaw**2 * dt
    return q


@dataclass(frozen=True)
class BiasModel:
    """First-order Gauss-Markov biases appended to the CTRV state (one per extra state).

    ``b(t + dt) = exp(-dt / tau) b(t) + w`` with ``w`` keeping the stationary std at ``std``.
    """

    correlation_s: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        tau = np.asarray(self.correlation_s, dtype=float).reshape(-1)
        std = np.asarray(self.std, dtype=float).reshape(-1)
        if tau.shape != std.shape or np.any(tau <= 0.0) or np.any(std <= 0.0):
            raise ValueError(f"bias correlation times {tau} and stds {std} must be positive and paired")
        object.__setattr__(self, "correlation_s", tau)
        object.__setattr__(self, "std", std)

    @property
    def size(self) -> int:
        return int(self.std.size)


def predict(
    state: np.ndarray,
    covariance: np.ndarray,
    dt: float,
    noise: ProcessNoiseConfig,
    biases: BiasModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """EKF prediction over ``dt >= 0`` seconds, in steps of at most ``noise.max_step_s``.

    ``state`` is the CTRV state followed by ``biases.size`` bias states (if any).
    """
    if dt < 0.0:
        raise ValueError(f"prediction interval must be >= 0 s, got {dt}")
    if dt == 0.0:
        return state.copy(), covariance.copy()
    n = state.size
    n_bias = 0 if biases is None else biases.size
    if n != STATE_DIM + n_bias:
        raise ValueError(f"state has {n} components, expected {STATE_DIM} + {n_bias} biases")
    steps = max(1, math.ceil(dt / noise.max_step_s - 1e-9))
    step = dt / steps
    jac_full = np.eye(n)
    q_full = np.zeros((n, n))
    bias_diag = np.arange(STATE_DIM, n)
    if biases is not None:
        decay = np.exp(-step / biases.correlation_s)
        jac_full[bias_diag, bias_diag] = decay
        q_full[bias_diag, bias_diag] = biases.std**2 * (1.0 - decay**2)
    x, p = state.copy(), covariance
    for _ in range(steps):
        q_full[:STATE_DIM, :STATE_DIM] = process_noise(x, step, noise)
        x[:STATE_DIM], jac_full[:STATE_DIM, :STATE_DIM] = ctrv_transition(x[:STATE_DIM], step)
        if biases is not None:
            x[STATE_DIM:] *= decay
        p = jac_full @ p @ jac_full.T + q_full
    return x, 0.5 * (p + p.T)
