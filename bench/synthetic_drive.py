"""Synthetic drives and measurement streams with known truth, for filter tests and benchmarks.

The sensor models mirror what the real localizers produce (issue 7's design figures): BoVW poses
with ~0.3 m median error, gaps and rare outliers; PoseNet poses with ~1-2 m errors correlated
over seconds; consumer GPS with 3-10 m errors correlated over tens of seconds. Errors follow a
first-order Gauss-Markov (AR(1)) process with the given correlation time (0 = white). Every
function takes a seed and is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoloc_ros.fusion.measurements import MotionMeasurement, PositionMeasurement
from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_BOVW, SOURCE_GPS, SOURCE_ODOMETRY, SOURCE_POSENET

_NS = 1_000_000_000


@dataclass(frozen=True)
class SyntheticDrive:
    """True vehicle states at the camera frames: ENU metres, ENU yaw (rad), m/s, rad/s."""

    stamps_ns: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray
    yaw_rate: np.ndarray

    def __len__(self) -> int:
        return int(self.stamps_ns.size)

    @property
    def positions(self) -> np.ndarray:
        return np.stack([self.x, self.y], axis=1)


def _integrate(
    t: np.ndarray, speed: np.ndarray, yaw_rate: np.ndarray, *, start_ns: int, decimate: int, yaw0: float
) -> SyntheticDrive:
    dt = np.diff(t, prepend=t[0])
    yaw = yaw0 + np.cumsum(yaw_rate * dt)
    x = np.cumsum(speed * np.cos(yaw) * dt)
    y = np.cumsum(speed * np.sin(yaw) * dt)
    sel = slice(0, None, decimate)
    stamps = start_ns + np.round(t[sel] * _NS).astype(np.int64)
    return SyntheticDrive(stamps, x[sel], y[sel], wrap_angle(yaw[sel]), speed[sel], yaw_rate[sel])


def simulate_town_drive(
    duration_s: float = 120.0,
    rate_hz: float = 20.0,
    seed: int = 0,
    *,
    cruise_speed_mps: float = 10.0,
    turn_speed_mps: float = 5.0,
    turn_every_s: float = 15.0,
    turn_radius_m: float = 12.0,
    start_ns: int = 1_700_000_000 * _NS,
) -> SyntheticDrive:
    """A town drive: straight streets at cruise speed, slowing down for 90-degree turns."""
    rng = np.random.default_rng(seed)
    substeps = 10
    t = np.arange(round(duration_s * rate_hz * substeps)) / (rate_hz * substeps)
    speed = np.full_like(t, cruise_speed_mps)
    yaw_rate = np.zeros_like(t)
    turn_rate = turn_speed_mps / turn_radius_m
    turn_duration = (math.pi / 2) / turn_rate
    centre = turn_every_s
    while centre + turn_duration < duration_s:
        direction = rng.choice([-1.0, 1.0])
        # Smooth (raised-cosine) speed dip and yaw-rate bump, so accelerations stay bounded.
        slow = np.clip(1.0 - np.abs(t - centre) / (turn_duration / 2 + 3.0), 0.0, 1.0)
        speed -= (cruise_speed_mps - turn_speed_mps) * np.sin(0.5 * np.pi * slow) ** 2
        phase = np.clip((t - centre) / turn_duration + 0.5, 0.0, 1.0)
        # sin^2 bump integrating to pi/2 over the turn.
        yaw_rate += direction * 2.0 * turn_rate * np.sin(np.pi * phase) ** 2 * ((phase > 0) & (phase < 1))
        centre += turn_every_s * rng.uniform(0.7, 1.3)
    yaw0 = float(rng.uniform(-np.pi, np.pi))
    return _integrate(t, speed, yaw_rate, start_ns=start_ns, decimate=substeps, yaw0=yaw0)


def simulate_ctrv_drive(
    duration_s: float = 60.0,
    rate_hz: float = 20.0,
    seed: int = 0,
    *,
    longitudinal_accel: float = 0.5,
    yaw_accel: float = 0.1,
    initial_speed_mps: float = 8.0,
    start_ns: int = 1_700_000_000 * _NS,
) -> SyntheticDrive:
    """A drive that follows the filter's own model: white longitudinal and yaw accelerations.

    ``longitudinal_accel`` (m/s^(3/2)) and ``yaw_accel`` (rad/s^(3/2)) have the meaning of
    :class:`~geoloc_ros.fusion.config.ProcessNoiseConfig`: a filter configured with the same values
    is consistent on this drive.
    """
    rng = np.random.default_rng(seed)
    substeps = 20
    step = 1.0 / (rate_hz * substeps)
    n = round(duration_s * rate_hz * substeps)
    t = np.arange(n) * step
    speed = initial_speed_mps + np.cumsum(rng.normal(0.0, longitudinal_accel * math.sqrt(step), n))
    yaw_rate = np.cumsum(rng.normal(0.0, yaw_accel * math.sqrt(step), n))
    yaw0 = float(rng.uniform(-np.pi, np.pi))
    return _integrate(t, speed, yaw_rate, start_ns=start_ns, decimate=substeps, yaw0=yaw0)


def gauss_markov(
    n: int, dim: int, std: float, correlation_frames: float, rng: np.random.Generator
) -> np.ndarray:
    """``(n, dim)`` stationary AR(1) errors with marginal ``std`` and the given correlation time."""
    if correlation_frames <= 0.0:
        return rng.normal(0.0, std, (n, dim))
    phi = math.exp(-1.0 / correlation_frames)
    out = np.empty((n, dim))
    out[0] = rng.normal(0.0, std, dim)
    innovations = rng.normal(0.0, std * math.sqrt(1.0 - phi * phi), (n, dim))
    for i in range(1, n):
        out[i] = phi * out[i - 1] + innovations[i]
    return out


@dataclass(frozen=True)
class PoseSensorModel:
    """An absolute pose localizer's error model (stds are per axis)."""

    source: str
    position_std_m: float
    yaw_std_deg: float
    correlation_s: float = 0.0
    # Published standard deviations; None: honest (equal to the true ones).
    reported_position_std_m: float | None = None
    reported_yaw_std_deg: float | None = None
    every_nth_frame: int = 1
    availability: float = 1.0
    mean_gap_s: float = 1.0
    outlier_rate: float = 0.0
    outlier_distance_m: tuple[float, float] = (10.0, 50.0)


BOVW_LIKE = PoseSensorModel(
    SOURCE_BOVW,
    0.25,
    0.5,
    availability=0.9,
    mean_gap_s=1.5,
    outlier_rate=0.01,
    outlier_distance_m=(8.0, 60.0),
)
POSENET_LIKE = PoseSensorModel(
    SOURCE_POSENET, 1.2, 3.0, correlation_s=2.0, reported_position_std_m=1.5, reported_yaw_std_deg=4.0
)


def _availability_mask(
    n: int, rate_hz: float, availability: float, mean_gap_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Two-state Markov chain: gaps of mean ``mean_gap_s``, available ``availability`` of the time."""
    if availability >= 1.0:
        return np.ones(n, dtype=bool)
    p_end = min(1.0, 1.0 / max(mean_gap_s * rate_hz, 1.0))
    p_start = p_end * (1.0 - availability) / availability
    mask = np.empty(n, dtype=bool)
    available = True
    draws = rng.random(n)
    for i in range(n):
        available = draws[i] >= p_start if available else draws[i] < p_end
        mask[i] = available
    return mask


def simulate_pose_stream(drive: SyntheticDrive, model: PoseSensorModel, seed: int) -> list[PoseEstimate]:
    """Pose estimates of ``drive`` as the localizer of ``model`` would publish them."""
    rng = np.random.default_rng(seed)
    n = len(drive)
    rate_hz = _NS / float(np.median(np.diff(drive.stamps_ns)))
    frames = model.correlation_s * rate_hz
    pos_err = gauss_markov(n, 2, model.position_std_m, frames, rng)
    yaw_err = gauss_markov(n, 1, math.radians(model.yaw_std_deg), frames, rng)[:, 0]
    available = _availability_mask(n, rate_hz, model.availability, model.mean_gap_s, rng)
    available &= np.arange(n) % model.every_nth_frame == 0
    outlier = rng.random(n) < model.outlier_rate
    reported_pos = model.reported_position_std_m or model.position_std_m
    reported_yaw = math.radians(model.reported_yaw_std_deg or model.yaw_std_deg)
    cov = np.diag([reported_pos**2, reported_pos**2, reported_yaw**2])
    out = []
    for i in np.flatnonzero(available):
        x, y, yaw = drive.x[i] + pos_err[i, 0], drive.y[i] + pos_err[i, 1], drive.yaw[i] + yaw_err[i]
        if outlier[i]:
            angle = rng.uniform(-np.pi, np.pi)
            distance = rng.uniform(*model.outlier_distance_m)
            x, y = x + distance * math.cos(angle), y + distance * math.sin(angle)
            yaw += rng.uniform(-np.pi, np.pi)
        out.append(
            PoseEstimate.planar(
                int(drive.stamps_ns[i]),
                x,
                y,
                float(wrap_angle(yaw)),
                cov,
                source=model.source,
                info={"outlier": bool(outlier[i])},
            )
        )
    return out


def simulate_gps_stream(
    drive: SyntheticDrive,
    seed: int,
    *,
    std_m: float = 4.0,
    correlation_s: float = 30.0,
    reported_std_m: float = 5.0,
    every_nth_frame: int = 4,
    source: str = SOURCE_GPS,
) -> list[PositionMeasurement]:
    """Consumer GPS positions in ``map`` with slowly wandering errors."""
    rng = np.random.default_rng(seed)
    rate_hz = _NS / float(np.median(np.diff(drive.stamps_ns)))
    err = gauss_markov(len(drive), 2, std_m, correlation_s * rate_hz, rng)
    cov = np.eye(2) * reported_std_m**2
    return [
        PositionMeasurement(int(drive.stamps_ns[i]), drive.positions[i] + err[i], cov, source)
        for i in range(0, len(drive), every_nth_frame)
    ]


def simulate_odometry_stream(
    drive: SyntheticDrive,
    seed: int,
    *,
    speed_std_mps: float = 0.1,
    yaw_rate_std_dps: float = 0.5,
    source: str = SOURCE_ODOMETRY,
) -> list[MotionMeasurement]:
    """Wheel-odometry speed and gyro yaw rate at every frame, with white noise."""
    rng = np.random.default_rng(seed)
    yaw_rate_std = math.radians(yaw_rate_std_dps)
    speed = drive.speed + rng.normal(0.0, speed_std_mps, len(drive))
    yaw_rate = drive.yaw_rate + rng.normal(0.0, yaw_rate_std, len(drive))
    return [
        MotionMeasurement(int(s), source, float(v), speed_std_mps**2, float(w), yaw_rate_std**2)
        for s, v, w in zip(drive.stamps_ns, speed, yaw_rate, strict=True)
    ]


def arrival_order(streams: dict[str, list[Any]], latency_s: dict[str, float]) -> list[Any]:
    """Merge streams in the order a live node would receive them: stamp + per-source latency."""
    items: list[tuple[int, str, int, Any]] = []
    for name, stream in streams.items():
        delay = round(latency_s.get(name, 0.0) * _NS)
        items.extend((m.stamp_ns + delay, name, k, m) for k, m in enumerate(stream))
    items.sort(key=lambda item: item[:3])
    return [item[3] for item in items]
