from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from evo.core import metrics as evo_metrics
from evo.core import sync
from evo.tools import file_interface

from geoloc_ros.evaluation import (
    EvaluationError,
    GroundTruth,
    evaluate_recorded,
    evaluate_source,
    evaluate_sources,
    hold_at_frames,
)
from geoloc_ros.evaluation.metrics import availability, relative_errors, track_errors, travelled_distance
from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.tum import planar_trajectory, write_tum

NS = 1_000_000_000
FRAME_NS = NS // 20


def _straight_ground_truth(seconds: float = 10.0) -> GroundTruth:
    """Driving east at 10 m/s along y = 0, z = 2, sampled at 100 Hz, heading known (east)."""
    stamps = np.arange(round(seconds * 100) + 1) * (NS // 100)
    x = stamps * 1e-9 * 10.0
    positions = np.stack([x, np.zeros_like(x), np.full_like(x, 2.0)], axis=1)
    return GroundTruth.from_enu(stamps, positions, yaw=np.zeros(stamps.size))


def _estimate_at(
    stamp_ns: int, dx: float, dy: float, dyaw_deg: float, cov: np.ndarray | None = None
) -> PoseEstimate:
    x = stamp_ns * 1e-9 * 10.0
    cov3 = np.diag([0.25, 0.25, math.radians(2.0) ** 2]) if cov is None else cov
    return PoseEstimate.planar(stamp_ns, x + dx, dy, math.radians(dyaw_deg), cov3, source="test")


def test_continuity_error_statistics_and_paper_bins_on_known_errors() -> None:
    gt = _straight_ground_truth()
    errors = [0.5, 1.5, 2.5, 3.5, 4.5]
    estimates = [_estimate_at((k + 1) * FRAME_NS, 0.0, e, 0.0) for k, e in enumerate(errors)]
    m = evaluate_source(estimates, gt, n_frames=10).metrics
    assert (m.n_localized, m.n_evaluated, m.continuity) == (5, 5, 0.5)
    assert m.mean_error_m == pytest.approx(2.5)
    assert m.median_error_m == pytest.approx(2.5)
    assert m.rmse_m == pytest.approx(math.sqrt(np.mean(np.square(errors))))
    assert m.max_error_m == pytest.approx(4.5)
    assert m.error_bins == pytest.approx({"0-1m": 0.2, "1-2m": 0.2, "2-3m": 0.2, "3-4m": 0.2, ">4m": 0.2})
    assert m.heading_median_deg == pytest.approx(0.0, abs=1e-9)


def test_bins_are_half_open() -> None:
    gt = _straight_ground_truth()
    estimates = [_estimate_at(FRAME_NS, 0.0, 1.0, 0.0), _estimate_at(2 * FRAME_NS, 0.0, 0.999, 0.0)]
    m = evaluate_source(estimates, gt, n_frames=2).metrics
    assert m.error_bin_counts == {"0-1m": 1, "1-2m": 1, "2-3m": 0, "3-4m": 0, ">4m": 0}


def test_heading_errors_are_wrapped_and_recall_counts_both_thresholds() -> None:
    gt = _straight_ground_truth()
    cases = [  # (position error m, heading error deg)
        (0.1, 1.0),  # inside every recall threshold
        (0.4, 4.0),  # (0.5, 5) and (5, 10)
        (0.1, 9.0),  # heading too large for the first two
        (3.0, 359.0),  # heading error 1 deg after wrapping; (5, 10) only
        (6.0, 0.0),  # none
    ]
    estimates = [_estimate_at((k + 1) * FRAME_NS, d, 0.0, h) for k, (d, h) in enumerate(cases)]
    m = evaluate_source(estimates, gt, n_frames=10).metrics
    assert m.heading_mean_deg == pytest.approx(np.mean([1, 4, 9, 1, 0]), abs=1e-6)
    hits = {(r.position_m, r.heading_deg): (r.of_frames, r.of_evaluated) for r in m.recall}
    assert hits[(0.25, 2.0)] == pytest.approx((0.1, 0.2))
    assert hits[(0.5, 5.0)] == pytest.approx((0.2, 0.4))
    assert hits[(5.0, 10.0)] == pytest.approx((0.4, 0.8))


def test_coverage_and_nees_of_a_calibrated_gaussian_source() -> None:
    gt = _straight_ground_truth(100.0)
    rng = np.random.default_rng(42)
    cov = np.array([[0.5, 0.2, 0.01], [0.2, 0.3, -0.005], [0.01, -0.005, 0.002]])
    noise = rng.multivariate_normal(np.zeros(3), cov, size=2000)
    estimates = [
        _estimate_at((k + 1) * FRAME_NS, dx, dy, math.degrees(dyaw), cov)
        for k, (dx, dy, dyaw) in enumerate(noise)
    ]
    m = evaluate_source(estimates, gt, n_frames=2000).metrics
    assert m.coverage_95 == pytest.approx(0.95, abs=0.015)
    assert m.mean_nees_position == pytest.approx(2.0, abs=0.15)
    assert m.mean_nees_pose == pytest.approx(3.0, abs=0.2)
    # The same errors with a covariance 4x too small: coverage collapses, NEES x4.
    confident = [PoseEstimate(e.stamp_ns, e.pose, e.covariance / 4.0, e.source) for e in estimates]
    c = evaluate_source(confident, gt, n_frames=2000).metrics
    assert c.coverage_95 < 0.7
    assert c.mean_nees_position == pytest.approx(4 * m.mean_nees_position)


def test_estimates_outside_ground_truth_are_flagged_not_evaluated() -> None:
    gt = _straight_ground_truth(2.0)
    estimates = [
        _estimate_at(-FRAME_NS, 0, 0, 0),
        _estimate_at(FRAME_NS, 0, 0.5, 0),
        _estimate_at(3 * NS, 0, 0, 0),
    ]
    m = evaluate_source(estimates, gt, n_frames=3).metrics
    assert (m.n_localized, m.n_evaluated, m.n_outside_ground_truth) == (3, 1, 2)
    assert m.outside_ground_truth == {"before_start": 1, "after_end": 1, "in_gap": 0}
    assert m.mean_error_m == pytest.approx(0.5)


def test_position_only_source_has_no_heading_figures() -> None:
    gt = _straight_ground_truth()
    cov = np.diag([9.0, 9.0, UNKNOWN_VARIANCE])
    estimates = [_estimate_at((k + 1) * FRAME_NS, 1.0, 0.0, 90.0, cov) for k in range(5)]
    m = evaluate_source(estimates, gt, n_frames=5).metrics
    assert m.n_heading == 0 and m.heading_mean_deg is None
    assert all(r.of_frames is None for r in m.recall)
    assert m.mean_nees_pose is None
    assert m.mean_nees_position == pytest.approx(1.0 / 9.0)


def test_duplicates_keep_the_last_and_too_many_estimates_are_refused() -> None:
    gt = _straight_ground_truth()
    estimates = [_estimate_at(FRAME_NS, 0, 5.0, 0), _estimate_at(FRAME_NS, 0, 1.0, 0)]
    m = evaluate_source(estimates, gt, n_frames=1).metrics
    assert (m.n_localized, m.n_duplicates, m.mean_error_m) == (1, 1, pytest.approx(1.0))
    many = [_estimate_at((k + 1) * FRAME_NS, 0, 0, 0) for k in range(3)]
    with pytest.raises(EvaluationError, match="3 localized frames but only 2 frames"):
        evaluate_source(many, gt, n_frames=2, source="bovw")


def test_continuity_after_first_fix_uses_the_frame_stamps() -> None:
    gt = _straight_ground_truth()
    frames = np.arange(1, 101) * FRAME_NS
    estimates = [_estimate_at(int(s), 0, 0, 0) for s in frames[50:] if s != frames[60]]
    m = evaluate_source(estimates, gt, frame_stamps_ns=frames).metrics
    assert m.continuity == pytest.approx(49 / 100)
    assert m.continuity_after_first_fix == pytest.approx(49 / 50)


def test_hold_at_frames_restamps_a_slower_stream() -> None:
    gps = [_estimate_at(k * NS // 5, 0, 0, 0) for k in range(1, 6)]  # 5 Hz from 0.2 s
    frames = np.arange(1, 25) * FRAME_NS  # 20 Hz from 0.05 s to 1.2 s
    held = hold_at_frames(gps, frames, max_age_s=0.25)
    stamps = [h.stamp_ns for h in held]
    assert stamps[0] == 4 * FRAME_NS  # nothing before the first fix at 0.2 s
    assert stamps[-1] == round(1.25 * NS) - FRAME_NS  # 1.2 s: 0.2 s after the last fix
    assert held[1].info["held_from_stamp_ns"] == NS // 5
    assert np.allclose(held[1].position, gps[0].position)  # unchanged pose: staleness counts as error


def test_evo_ape_reproduces_our_position_statistics(tmp_path: Path) -> None:
    """evo (translation APE, no alignment) on our planar TUM exports equals our 2D errors."""
    gt = _straight_ground_truth(30.0)
    rng = np.random.default_rng(7)
    estimates = [
        _estimate_at((k + 1) * FRAME_NS, *rng.normal(0, 0.8, 2), rng.normal(0, 2.0)) for k in range(500)
    ]
    evaluation = evaluate_source(estimates, gt, n_frames=500)
    a = evaluation.associated
    write_tum(tmp_path / "gt.tum", planar_trajectory(a.stamps_ns, a.truth.positions[:, :2], a.truth.yaw))
    write_tum(tmp_path / "est.tum", planar_trajectory(a.stamps_ns, a.positions[:, :2], a.yaw))
    reference = file_interface.read_tum_trajectory_file(str(tmp_path / "gt.tum"))
    estimate = file_interface.read_tum_trajectory_file(str(tmp_path / "est.tum"))
    reference, estimate = sync.associate_trajectories(reference, estimate)
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((reference, estimate))
    stats = ape.get_all_statistics()
    m = evaluation.metrics
    assert stats["mean"] == pytest.approx(m.mean_error_m, abs=1e-7)
    assert stats["median"] == pytest.approx(m.median_error_m, abs=1e-7)
    assert stats["rmse"] == pytest.approx(m.rmse_m, abs=1e-7)
    assert stats["max"] == pytest.approx(m.max_error_m, abs=1e-7)


def test_evaluate_sources_with_per_source_frame_counts() -> None:
    gt = _straight_ground_truth()
    frames = np.arange(1, 11) * FRAME_NS
    by_source = {
        "bovw": [_estimate_at(int(s), 0.1, 0, 0) for s in frames[:8]],
        "gps": [_estimate_at(k * NS // 5, 3.0, 0, 0) for k in range(1, 3)],
    }
    result = evaluate_sources(by_source, gt, frame_stamps_ns=frames, n_frames={"gps": 2})
    assert [m.source for m in result.metrics] == ["bovw", "gps"]
    assert result.sources["bovw"].metrics.continuity == pytest.approx(0.8)
    assert result.sources["gps"].metrics.continuity == pytest.approx(1.0)
    assert result.as_dict()["sources"]["gps"]["mean_error_m"] == pytest.approx(3.0)


def test_recorded_sources_in_report_order_and_off_frame_streams_held_at_the_frames() -> None:
    gt = _straight_ground_truth()
    frames = np.arange(1, 11) * FRAME_NS
    on_frames = [_estimate_at(int(s), 0.5, 0, 0) for s in frames]
    filter_rate = [_estimate_at(round(t * NS), 0.0, 0, 0) for t in (0.12, 0.22, 0.32)]  # off the frames
    by_source = {"zeta": on_frames, "fused": filter_rate, "bovw": on_frames[:5]}
    result = evaluate_recorded(by_source, gt, frames, hold_s=0.1)
    assert list(result.sources) == ["bovw", "fused", "zeta"]  # SOURCE_ORDER, then the others by name
    bovw, fused = result.sources["bovw"].metrics, result.sources["fused"].metrics
    assert bovw.continuity == pytest.approx(0.5) and bovw.mean_error_m == pytest.approx(0.5)
    # frames at 0.05 .. 0.50 s: none before the first fix (0.05, 0.10), none more than 0.1 s after the
    # last one (0.45, 0.50): held at the six between
    assert fused.n_localized == 6 and fused.n_frames == 10
    assert fused.mean_error_m > 0.0  # the held pose's staleness counts as error


def test_track_errors_split_the_error_in_the_frame_of_the_true_heading() -> None:
    # Heading north: an error to the east is to the right (cross-track negative), north is ahead.
    along, cross = track_errors([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], [math.pi / 2, math.pi / 2, 0.0])
    np.testing.assert_allclose(along, [0.0, 2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(cross, [-1.0, 0.0, 4.0], atol=1e-12)
    along, cross = track_errors([[1.0, 1.0]], [np.nan])
    assert np.isnan(along[0]) and np.isnan(cross[0])


def test_cross_and_along_track_figures_of_a_source() -> None:
    gt = _straight_ground_truth()  # heading east: x is along-track, y cross-track (left)
    estimates = [
        _estimate_at(FRAME_NS, 1.0, -2.0, 0.0),
        _estimate_at(2 * FRAME_NS, -3.0, 2.0, 0.0),
        _estimate_at(3 * FRAME_NS, 0.0, 0.0, 0.0),
    ]
    m = evaluate_source(estimates, gt, n_frames=3).metrics
    assert m.n_track == 3
    assert m.along_track_mean_m == pytest.approx(4.0 / 3.0)
    assert m.along_track_rmse_m == pytest.approx(math.sqrt(10.0 / 3.0))
    assert m.cross_track_mean_m == pytest.approx(4.0 / 3.0)
    assert m.cross_track_rmse_m == pytest.approx(math.sqrt(8.0 / 3.0))
    assert m.cross_track_p95_m == pytest.approx(np.percentile([2.0, 2.0, 0.0], 95))


def test_relative_errors_per_second_and_per_metre() -> None:
    keys = np.array([0.0, 0.5, 1.0, 1.5, 4.0])
    true = np.stack([keys * 10.0, np.zeros(5)], axis=1)
    est = true + np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    # Pairs (window 1): 0->2 (span 1, drift 1), 1->3 (span 1, drift 1); 2->4 and 3->4 span > 1.5.
    np.testing.assert_allclose(relative_errors(keys, est, true, 1.0), [1.0, 1.0])
    # Per metre along the track: window 10 m, the same pairs, drift 1 m over 10 m.
    np.testing.assert_allclose(relative_errors(travelled_distance(true), est, true, 10.0), [0.1, 0.1])
    # A constant offset is no relative error.
    np.testing.assert_allclose(relative_errors(keys, true + 5.0, true, 1.0), [0.0, 0.0])
    assert relative_errors(keys[:1], est[:1], true[:1], 1.0).size == 0
    with pytest.raises(EvaluationError, match="window"):
        relative_errors(keys, est, true, 0.0)


def test_travelled_distance_accumulates_steps() -> None:
    np.testing.assert_allclose(travelled_distance([[0, 0], [3, 4], [3, 6]]), [0.0, 5.0, 7.0])
    assert travelled_distance(np.zeros((0, 2))).size == 0


def test_availability_time_to_first_fix_gaps_and_reacquisition() -> None:
    frames = np.arange(20) * (NS // 10)  # 10 Hz, 0 .. 1.9 s
    # Fixes at 0.3, 0.4, 0.5 (bad), 0.6, then 2.0 s of nothing until 1.9 (good), with 0.5 bad.
    fixes = np.array([3, 4, 5, 6, 19]) * (NS // 10)
    good = [True, True, False, True, True]
    a = availability(frames, fixes, good, loss_after_s=0.5)
    assert a.time_to_first_fix_s == pytest.approx(0.3)
    assert a.longest_gap_s == pytest.approx(1.3)
    # Good at 0.3, 0.4, 0.6, 1.9: one loss (0.6 -> 1.9 s = 1.3 s > 0.5 s); 0.4 -> 0.6 is short.
    assert (a.n_losses, a.n_not_reacquired) == (1, 0)
    assert a.reacquisition_median_s == pytest.approx(1.3) and a.reacquisition_max_s == pytest.approx(1.3)
    # Lost at the end and never re-acquired; no fix at all.
    a = availability(frames, fixes[:4], good[:4], loss_after_s=0.5)
    assert (a.n_losses, a.n_not_reacquired, a.reacquisition_max_s) == (1, 1, None)
    assert a.longest_gap_s == pytest.approx(1.3)
    none = availability(frames, [], [])
    assert none.time_to_first_fix_s is None and none.longest_gap_s is None


def test_integrity_recall_at_distances_and_false_confidence() -> None:
    gt = _straight_ground_truth()
    cov = np.diag([1.0, 1.0, math.radians(2.0) ** 2])
    # 99.9% ellipse of a unit covariance: radius sqrt(chi2(0.999, 2)) = 3.72 m.
    errors = [0.5, 2.0, 3.0, 4.0, 6.0]
    estimates = [_estimate_at((k + 1) * FRAME_NS, 0.0, e, 0.0, cov) for k, e in enumerate(errors)]
    frames = np.arange(1, 11) * FRAME_NS
    m = evaluate_source(estimates, gt, frame_stamps_ns=frames).metrics
    assert m.recall_at_m == pytest.approx({"1m": 0.1, "3m": 0.3, "5m": 0.4})
    assert m.p99_error_m == pytest.approx(np.percentile(errors, 99))
    assert (m.n_false_confidence, m.false_confidence) == (2, pytest.approx(0.4))
    assert m.availability is not None
    assert m.availability.time_to_first_fix_s == pytest.approx(0.0)
    # Estimates at frames 1..5 of 10: the gap runs from the 5th to the last frame.
    assert m.availability.longest_gap_s == pytest.approx(5 * FRAME_NS * 1e-9)
