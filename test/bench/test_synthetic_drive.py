from __future__ import annotations

import numpy as np
from synthetic_drive import (
    BOVW_LIKE,
    POSENET_LIKE,
    arrival_order,
    gauss_markov,
    simulate_gps_stream,
    simulate_pose_stream,
    simulate_town_drive,
)


def _errors(stream: list, drive) -> np.ndarray:
    index = {int(s): i for i, s in enumerate(drive.stamps_ns)}
    rows = [index[e.stamp_ns] for e in stream]
    pos = np.array([e.position[:2] if hasattr(e, "pose") else e.position for e in stream])
    return np.hypot(pos[:, 0] - drive.x[rows], pos[:, 1] - drive.y[rows])


def test_town_drive_is_smooth_and_consistent() -> None:
    drive = simulate_town_drive(60.0, 20.0, seed=1)
    assert len(drive) == 1200 and np.all(np.diff(drive.stamps_ns) == 50_000_000)
    step = np.hypot(np.diff(drive.x), np.diff(drive.y))
    assert np.allclose(step, drive.speed[1:] * 0.05, rtol=0.05)  # positions follow the speed
    assert drive.speed.min() > 4.0 and drive.speed.max() <= 10.0


def test_sensor_models_match_their_design_figures() -> None:
    drive = simulate_town_drive(300.0, 20.0, seed=2)
    bovw = simulate_pose_stream(drive, BOVW_LIKE, seed=3)
    inliers = [e for e in bovw if not e.info["outlier"]]
    assert 0.25 < np.median(_errors(inliers, drive)) < 0.35  # ~0.3 m median
    assert 0.85 < len(bovw) / len(drive) < 0.95  # ~90% availability
    assert 0.005 < (len(bovw) - len(inliers)) / len(bovw) < 0.02
    posenet = simulate_pose_stream(drive, POSENET_LIKE, seed=4)
    assert 1.0 < np.median(_errors(posenet, drive)) < 2.0
    gps = simulate_gps_stream(drive, seed=5)
    assert 3.0 < np.median(_errors(gps, drive)) < 10.0


def test_gauss_markov_has_the_requested_std_and_correlation() -> None:
    rng = np.random.default_rng(0)
    x = gauss_markov(200_000, 1, 2.0, 10.0, rng)[:, 0]
    assert abs(np.std(x) - 2.0) < 0.1
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert abs(lag1 - np.exp(-0.1)) < 0.01


def test_arrival_order_applies_latencies() -> None:
    drive = simulate_town_drive(1.0, 20.0, seed=0)
    streams = {
        "bovw": simulate_pose_stream(drive, BOVW_LIKE, seed=1)[:3],
        "posenet": simulate_pose_stream(drive, POSENET_LIKE, seed=2)[:3],
    }
    merged = arrival_order(streams, {"bovw": 0.08, "posenet": 0.01})
    arrivals = [m.stamp_ns + (80_000_000 if m.source == "bovw" else 10_000_000) for m in merged]
    assert arrivals == sorted(arrivals)
