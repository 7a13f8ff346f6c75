from __future__ import annotations

import numpy as np
from synthetic_drive import BOVW_LIKE, POSENET_LIKE, simulate_pose_stream, simulate_town_drive

from geoloc_ros.pipelines.fuse_drive import fuse_offline


def test_offline_fusion_is_deterministic_and_order_independent() -> None:
    drive = simulate_town_drive(15.0, 20.0, seed=3)
    measurements = simulate_pose_stream(drive, BOVW_LIKE, seed=4) + simulate_pose_stream(
        drive, POSENET_LIKE, seed=5
    )
    first = fuse_offline(measurements, drive.stamps_ns)
    shuffled = list(measurements)
    np.random.default_rng(0).shuffle(shuffled)
    second = fuse_offline(shuffled, drive.stamps_ns[::-1])
    assert [e.stamp_ns for e in first.estimates] == [e.stamp_ns for e in second.estimates]
    for a, b in zip(first.estimates, second.estimates, strict=True):
        assert np.array_equal(a.position, b.position) and np.array_equal(a.covariance, b.covariance)
    assert first.diagnostics.as_dict() == second.diagnostics.as_dict()


def test_outputs_start_at_the_first_fix_and_use_only_the_past() -> None:
    drive = simulate_town_drive(5.0, 20.0, seed=6)
    stream = simulate_pose_stream(drive, BOVW_LIKE, seed=7)
    run = fuse_offline(stream, drive.stamps_ns)
    assert run.estimates[0].stamp_ns == stream[0].stamp_ns
    # The fused pose at a stamp never depends on later measurements.
    cut = len(stream) // 2
    partial = fuse_offline(stream[:cut], drive.stamps_ns)
    same = [e for e in partial.estimates if e.stamp_ns <= stream[cut - 1].stamp_ns]
    for a, b in zip(same, run.estimates, strict=False):
        assert np.array_equal(a.position, b.position)
