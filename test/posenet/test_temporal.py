from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.geo.heading import angle_difference
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_POSENET, SOURCE_POSENET_TEMPORAL
from geoloc_ros.posenet.errors import TemporalError
from geoloc_ros.posenet.temporal import CausalPoseFilter, TemporalConfig, filter_sequence, smooth_sequence

RATE_HZ = 20.0
POSITION_STD = 2.5
HEADING_STD = np.deg2rad(4.0)


def drive(seconds: float = 30.0) -> np.ndarray:
    """Ground truth (t, x, y, yaw) of a car at 10 m/s: straight, a left curve, straight."""
    dt = 1.0 / RATE_HZ
    n = int(seconds * RATE_HZ)
    state = np.zeros((n, 4))
    x, y, yaw = 0.0, 0.0, 0.3
    for k in range(n):
        t = k * dt
        state[k] = (t, x, y, yaw)
        yaw_rate = 0.15 if 10.0 <= t < 20.0 else 0.0
        x += 10.0 * dt * np.cos(yaw + 0.5 * yaw_rate * dt)
        y += 10.0 * dt * np.sin(yaw + 0.5 * yaw_rate * dt)
        yaw += yaw_rate * dt
    return state


def noisy_estimates(
    truth: np.ndarray, outlier_rate: float = 0.04, seed: int = 0
) -> tuple[list[PoseEstimate], np.ndarray]:
    rng = np.random.default_rng(seed)
    cov = np.diag([POSITION_STD**2, POSITION_STD**2, HEADING_STD**2])
    outliers = rng.random(len(truth)) < outlier_rate
    estimates = []
    for k, (t, x, y, yaw) in enumerate(truth):
        mx, my = x + rng.normal(0, POSITION_STD), y + rng.normal(0, POSITION_STD)
        myaw = yaw + rng.normal(0, HEADING_STD)
        if outliers[k]:
            mx, my, myaw = mx + rng.choice([-1, 1]) * 40.0, my + 25.0, rng.uniform(-np.pi, np.pi)
        estimates.append(PoseEstimate.planar(round(t * 1e9), mx, my, myaw, cov, source=SOURCE_POSENET))
    return estimates, outliers


def errors(estimates: list[PoseEstimate], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    position = np.array(
        [
            np.hypot(e.position[0] - x, e.position[1] - y)
            for e, (_, x, y, _) in zip(estimates, truth, strict=True)
        ]
    )
    heading = np.abs(angle_difference([e.yaw for e in estimates], truth[:, 3]))
    return position, heading


def test_filter_and_smoother_reduce_the_error_of_noisy_frames() -> None:
    truth = drive()
    raw, outliers = noisy_estimates(truth)
    filtered = filter_sequence(raw)
    smoothed = smooth_sequence(raw)
    raw_pos, raw_yaw = errors(raw, truth)
    f_pos, f_yaw = errors(filtered, truth)
    s_pos, s_yaw = errors(smoothed, truth)
    settled = slice(40, None)  # after the first two seconds
    assert np.median(f_pos[settled]) < 0.5 * np.median(raw_pos[settled])
    assert np.median(s_pos[settled]) < 0.8 * np.median(f_pos[settled])
    assert np.median(f_yaw[settled]) < 0.5 * np.median(raw_yaw[settled])
    assert np.median(s_yaw[settled]) < np.median(f_yaw[settled])
    rejected = np.array([not e.info["accepted"] for e in filtered])
    assert rejected[outliers].mean() > 0.9 and rejected[~outliers].mean() < 0.02
    assert all(e.source == SOURCE_POSENET_TEMPORAL for e in filtered + smoothed)
    assert [e.stamp_ns for e in smoothed] == [e.stamp_ns for e in raw]
    # Speed is recovered from positions alone.
    assert np.median([e.info["speed_mps"] for e in filtered[100:]]) == pytest.approx(10.0, abs=0.5)


def test_causal_output_never_uses_future_frames() -> None:
    truth = drive(10.0)
    raw, _ = noisy_estimates(truth, seed=3)
    full = filter_sequence(raw)
    prefix = filter_sequence(raw[:120])
    for a, b in zip(prefix, full[:120], strict=True):
        np.testing.assert_array_equal(a.pose.as_matrix(), b.pose.as_matrix())
        np.testing.assert_array_equal(a.covariance, b.covariance)
    online = CausalPoseFilter()
    for k, estimate in enumerate(raw[:50]):
        np.testing.assert_array_equal(online.update(estimate).pose.as_matrix(), full[k].pose.as_matrix())


def test_smoother_ends_at_the_filter_and_is_more_certain() -> None:
    raw, _ = noisy_estimates(drive(8.0), outlier_rate=0.0, seed=5)
    filtered, smoothed = filter_sequence(raw), smooth_sequence(raw)
    np.testing.assert_allclose(smoothed[-1].pose.as_matrix(), filtered[-1].pose.as_matrix())
    for f, s in zip(filtered[:-1], smoothed[:-1], strict=True):
        assert np.trace(s.planar_covariance) <= np.trace(f.planar_covariance) + 1e-9


def test_restarts_on_gaps_lost_track_and_backward_stamps() -> None:
    config = TemporalConfig(reset_after_rejections=5, max_gap_s=1.0)
    truth = drive(6.0)
    raw, _ = noisy_estimates(truth, outlier_rate=0.0, seed=7)
    # A 3 s gap, then the vehicle "teleports" 200 m: gap restart, then lost-track restart.
    shifted = [
        PoseEstimate.planar(
            e.stamp_ns + 3_000_000_000, e.position[0] + 200.0, e.position[1], e.yaw, e.planar_covariance
        )
        for e in raw[60:]
    ]
    out = filter_sequence(raw[:40] + shifted, config)
    assert out[40].info["restarted"]
    assert abs(out[-1].position[0] - shifted[-1].position[0]) < 10.0
    jumped = [
        PoseEstimate.planar(e.stamp_ns, e.position[0] + 200.0, e.position[1], e.yaw, e.planar_covariance)
        for e in raw[40:]
    ]
    lost = filter_sequence(raw[:40] + jumped, config)
    restarts = [k for k, e in enumerate(lost) if e.info["restarted"]]
    assert restarts == [0, 44]  # five rejections in a row, then a restart on the fifth
    online = CausalPoseFilter(config)
    online.update(raw[10])
    assert online.update(raw[5]).info["restarted"]
    with pytest.raises(TemporalError, match="must not decrease"):
        filter_sequence([raw[3], raw[2]])
    bad = PoseEstimate.planar(0, float("nan"), 0.0, 0.0, np.eye(3))
    with pytest.raises(TemporalError, match="not finite"):
        CausalPoseFilter().update(bad)


def test_fusion_takes_the_sources_posenet_publishes() -> None:
    # One list of source names (geometry.sources) now; what remains to check is that the names the
    # PoseNet side stamps are the ones the fusion configures inputs for.
    from geoloc_ros.fusion.config import FusionConfig

    pose_sources = FusionConfig().pose_sources
    assert TemporalConfig().source == SOURCE_POSENET_TEMPORAL
    assert SOURCE_POSENET in pose_sources
    assert TemporalConfig().source in pose_sources


def test_correlated_errors_keep_the_published_ellipse_honest() -> None:
    truth = drive(20.0)
    rng = np.random.default_rng(3)
    cov = np.diag([POSITION_STD**2, POSITION_STD**2, HEADING_STD**2])
    # PoseNet-like errors as large as the predicted covariance says (2.5 m): mostly a bias that
    # wanders over ~5 s (stationary AR(1), 2.3 m), plus 0.8 m of white noise.
    a = np.exp(-1.0 / (RATE_HZ * 5.0))
    bias = np.zeros((len(truth), 2))
    bias[0] = rng.normal(0.0, 2.3, 2)
    for k in range(1, len(truth)):
        bias[k] = a * bias[k - 1] + np.sqrt(1 - a**2) * rng.normal(0.0, 2.3, 2)
    frames = [
        PoseEstimate.planar(
            round(t * 1e9),
            x + bx + rng.normal(0, 0.8),
            y + by + rng.normal(0, 0.8),
            yaw,
            cov,
            source=SOURCE_POSENET,
        )
        for (t, x, y, yaw), (bx, by) in zip(truth, bias, strict=True)
    ]

    def coverage(config: TemporalConfig) -> float:
        out = filter_sequence(frames, config)[40:]
        inside = []
        for e, (_, x, y, _) in zip(out, truth[40:], strict=True):
            d = np.array([e.position[0] - x, e.position[1] - y])
            inside.append(d @ np.linalg.solve(e.planar_covariance[:2, :2], d) <= 5.991)
        return float(np.mean(inside))

    assert coverage(TemporalConfig(correlated_error_share=0.0)) < 0.5  # white-noise model: overconfident
    assert coverage(TemporalConfig()) > 0.9
