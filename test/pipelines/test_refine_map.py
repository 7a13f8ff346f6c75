"""Map refinement: the pose graph recovers injected panorama errors; the refined bundle is new and whole."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.cli.main import main as cli_main
from geoloc_ros.evaluation.maperror import panorama_pose_errors
from geoloc_ros.geo.enu import geodetic_to_enu
from geoloc_ros.gis.panorama_set import PANORAMAS_TRUTH, read_panorama_truth
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.refine_map import (
    Anchor,
    PairConstraint,
    RefineConfig,
    RefineError,
    _rotate,
    refine_bundle,
    solve_pose_graph,
)


def _apply(points: np.ndarray, centre: np.ndarray, m: np.ndarray) -> np.ndarray:
    return _rotate(points - centre, m[2]) + centre + m[:2]


def _unapply(points: np.ndarray, centre: np.ndarray, m: np.ndarray) -> np.ndarray:
    return _rotate(points - centre - m[:2], -m[2]) + centre


def synthetic(seed: int, n: int = 12, outliers: float = 0.2):
    """Panoramas every 20 m along a street, true corrections of σ 1 m / 1.5°, façade points seen by
    neighbours (with 5 cm noise and a share of wrong pairs)."""
    rng = np.random.default_rng(seed)
    centres = np.column_stack([np.arange(n) * 20.0, rng.normal(0.0, 0.3, n)])
    truth = np.column_stack([rng.normal(0, 1.0, (n, 2)), rng.normal(0, math.radians(1.5), n)])
    pairs = []
    for a in range(n - 1):
        for b in range(a + 1, min(a + 3, n)):
            y = np.column_stack(
                [rng.uniform(centres[a, 0] - 10, centres[b, 0] + 10, 80), rng.choice([-8.0, 8.0], 80)]
            )
            pa = _unapply(y, centres[a], truth[a]) + rng.normal(0, 0.05, (80, 2))
            pb = _unapply(y, centres[b], truth[b]) + rng.normal(0, 0.05, (80, 2))
            wrong = rng.random(80) < outliers
            pb[wrong] += rng.uniform(-5, 5, (int(wrong.sum()), 2))
            pairs.append(PairConstraint(a, b, pa, pb))
    return centres, truth, pairs


def relative_error(centres: np.ndarray, corrections: np.ndarray, truth: np.ndarray) -> float:
    """Median position error after the best rigid alignment of the whole set (what matches alone
    can see: the set's common shift and turn are only known from the metadata priors)."""
    est, true = centres + corrections[:, :2], centres + truth[:, :2]
    a, b = est - est.mean(axis=0), true - true.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    rotation = (u @ vt).T
    aligned = a @ rotation.T
    return float(np.median(np.linalg.norm(aligned - b, axis=1)))


def test_pose_graph_recovers_relative_errors_despite_wrong_matches():
    centres, truth, pairs = synthetic(0)
    n = len(centres)
    result = solve_pose_graph(
        centres, np.full(n, 1.0), np.full(n, math.radians(1.5)), pairs, [], RefineConfig()
    )
    before = relative_error(centres, np.zeros_like(truth), truth)
    after = relative_error(centres, result.corrections, truth)
    assert before > 0.5 and after < 0.1 * before, (before, after)
    heading = np.degrees(
        np.abs((result.corrections[:, 2] - truth[:, 2]) - np.mean(result.corrections[:, 2] - truth[:, 2]))
    )
    assert np.median(heading) < 0.2
    assert result.covariance.shape == (n, 3, 3)
    assert np.all(np.linalg.eigvalsh(result.covariance) > 0)


def test_anchors_fix_the_absolute_position():
    centres, truth, pairs = synthetic(1)
    n = len(centres)
    rng = np.random.default_rng(5)
    anchors = []
    for p in (1, 5, 9):
        for _ in range(10):
            true_xy = centres[p] + rng.uniform(-8, 8, 2)
            true_yaw = rng.uniform(-3, 3)
            estimated = _unapply(true_xy, centres[p], truth[p]) + rng.normal(0, 0.05, 2)
            anchors.append(
                Anchor(p, estimated, true_yaw - truth[p, 2], true_xy, true_yaw, 0.1, math.radians(0.15))
            )
    result = solve_pose_graph(
        centres, np.full(n, 1.0), np.full(n, math.radians(1.5)), pairs, anchors, RefineConfig()
    )
    error = np.linalg.norm(result.corrections[:, :2] - truth[:, :2], axis=1)
    assert np.median(error) < 0.1, error
    assert np.median(np.degrees(np.abs(result.corrections[:, 2] - truth[:, 2]))) < 0.1
    # The stated uncertainty shrinks where the graph knows more.
    assert np.all(np.sqrt(result.covariance[:, 0, 0]) < 0.5)


def test_a_refinement_that_cannot_converge_is_an_error():
    centres, _, pairs = synthetic(2)
    n = len(centres)
    with pytest.raises(RefineError, match="did not converge after 1 evaluations"):
        solve_pose_graph(centres, np.ones(n), np.full(n, 0.02), pairs, [], RefineConfig(max_nfev=1))


@pytest.mark.slow
def test_refine_bundle_recovers_injected_errors_on_tiny(tiny_sim_dir: Path, tiny_perturbed, tmp_path):
    map_dir, truth_dir = tiny_perturbed
    files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(map_dir.rglob("*")) if p.is_file()}
    out = tmp_path / "refined"
    summary = refine_bundle(map_dir, out)
    assert summary["pairs"] >= 5
    source, refined = MapBundle.open(map_dir), MapBundle.open(out)  # full checksum pass
    truth = read_panorama_truth(truth_dir / PANORAMAS_TRUTH)
    true = np.array(
        [
            geodetic_to_enu(*(truth[i][k] for k in ("lat", "lon", "alt")), source.origin).reshape(3)
            for i in source.panorama_ids
        ]
    )[:, :2]
    stated = np.asarray(source.panorama_positions)[:, :2]
    corrected = np.asarray(refined.panorama_positions)[:, :2]
    # Eight panoramas: matches fix their relative poses; the set's common shift and turn stay as the
    # metadata says (a survey drive anchors those). The relative error must drop well below the input's.
    before = relative_error(
        stated, np.zeros((len(stated), 3)), np.column_stack([true - stated, np.zeros(len(true))])
    )
    after = relative_error(
        corrected, np.zeros((len(stated), 3)), np.column_stack([true - corrected, np.zeros(len(true))])
    )
    assert after < 0.6 * before, (before, after)
    assert panorama_pose_errors(refined, truth_dir).summary()["panoramas"] == source.n_panoramas
    assert refined.info()["map_version"] == 2 and refined.info()["refinement"]["pairs"] == summary["pairs"]
    # The input bundle is never modified, and refining into it is refused.
    assert files == {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(map_dir.rglob("*")) if p.is_file()
    }
    with pytest.raises(RefineError, match="never modified"):
        refine_bundle(map_dir, map_dir)
    with pytest.raises(RefineError, match="already exists"):
        refine_bundle(map_dir, out)
    # Views and points moved with their panoramas: a view's points still project onto its keypoints.
    view = int(refined.views_of_panorama(0)[0])
    features, points = refined.features(view)
    pose = refined.views.pose(view)
    finite = np.isfinite(points[:, 0])
    optical = (np.asarray(points[finite], float) - pose.translation) @ pose.rotation
    uv = optical[:, :2] / optical[:, 2:3] * [refined.camera.fx, refined.camera.fy] + [
        refined.camera.cx,
        refined.camera.cy,
    ]
    np.testing.assert_allclose(uv, features.keypoints_xy[finite], atol=0.05)
    assert cli_main(["map", "info", str(out), "--json"]) == 0


def test_cli_refine_reports_a_missing_bundle_clearly(tmp_path, capsys):
    assert cli_main(["map", "refine", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_an_rtk_survey_drive_anchors_the_panoramas_absolutely(tiny_sim_dir: Path, tiny_perturbed, tmp_path):
    map_dir, truth_dir = tiny_perturbed
    config = RefineConfig.model_validate(
        {"localizer": {"features": {"fast": False}, "rejection": {"min_inliers": 15}}}
    )
    summary = refine_bundle(map_dir, tmp_path / "anchored", [tiny_sim_dir / "drive"], config)
    assert summary["anchors"] >= 30
    before = panorama_pose_errors(MapBundle.open(map_dir), truth_dir).summary()
    after = panorama_pose_errors(MapBundle.open(tmp_path / "anchored"), truth_dir).summary()
    assert before["position_median_m"] > 0.3
    assert after["position_median_m"] < 0.15 and after["heading_median_deg"] < 0.3, after
