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


@pytest.mark.slow
def test_refining_after_a_panorama_is_added_matches_only_the_new_pairs(
    tiny_sim_dir: Path, tiny_perturbed, tiny_map_config, tmp_path
):
    """The map of the perturbed set without its last panorama is refined; the whole set's map
    refined with --reuse of it matches only the pairs whose panoramas' content changed (the new
    one, and neighbours whose virtual views it changed), and gives what a fresh refinement gives."""
    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.gis.panorama_set import INDEX_NAME, ORIGIN_NAME
    from geoloc_ros.mapping.build import build_map
    from geoloc_ros.pipelines.refine_map import _panorama_features, read_pair_cache

    map_dir, root = tiny_perturbed
    full = MapBundle.open(map_dir)
    subset = tmp_path / "panoramas"
    subset.mkdir()
    (subset / ORIGIN_NAME).write_bytes((root / "panoramas" / ORIGIN_NAME).read_bytes())
    (subset / "images").symlink_to((root / "panoramas" / "images").resolve())
    lines = (root / "panoramas" / INDEX_NAME).read_text().splitlines()
    (subset / INDEX_NAME).write_text("\n".join(lines[:-1]) + "\n")
    camera = PinholeCamera.load(tiny_sim_dir / "drive" / "camera.yaml")  # as the fixture's map
    build_map(subset, tmp_path / "map7", tiny_map_config, camera=camera, workers=1)

    cfg = RefineConfig()
    first = refine_bundle(tmp_path / "map7", tmp_path / "refined7")
    assert first["pairs_reused"] == 0 and first["pairs_matched"] > 0
    assert len(read_pair_cache(MapBundle.open(tmp_path / "refined7"))) == first["pairs_matched"]
    again = refine_bundle(map_dir, tmp_path / "refined8", reuse=[tmp_path / "refined7"])
    fresh = refine_bundle(map_dir, tmp_path / "fresh8")
    # Which panoramas bring other features than in the 7-panorama map (the new one at least).
    seven = MapBundle.open(tmp_path / "map7")
    changed = {full.n_panoramas - 1}
    for p, pid in enumerate(seven.panorama_ids):
        (d7, x7), (d8, x8) = (
            _panorama_features(seven, p, cfg),
            _panorama_features(full, full.panorama_ids.index(pid), cfg),
        )
        if d7.shape != d8.shape or not (np.array_equal(d7, d8) and np.array_equal(x7, x8)):
            changed.add(full.panorama_ids.index(pid))
    centres = np.asarray(full.panorama_positions)[:, :2]
    candidates = [
        (a, b)
        for a in range(full.n_panoramas)
        for b in range(a + 1, full.n_panoramas)
        if np.linalg.norm(centres[a] - centres[b]) <= cfg.max_pair_distance_m
    ]
    expected_matched = sum(1 for a, b in candidates if a in changed or b in changed)
    assert again["pairs_matched"] == expected_matched < len(candidates)
    assert again["pairs_reused"] == len(candidates) - expected_matched > 0
    assert fresh["pairs_matched"] == len(candidates) and fresh["pairs_reused"] == 0
    # Reused matches give the same refinement as matching everything again.
    assert again["pairs"] == fresh["pairs"] and again["point_pairs"] == fresh["point_pairs"]
    np.testing.assert_allclose(
        MapBundle.open(tmp_path / "refined8").panorama_positions,
        MapBundle.open(tmp_path / "fresh8").panorama_positions,
        atol=1e-6,
    )


class _CacheBundle:
    """What read_pair_cache reads of a refined bundle: its pair entries and point pairs."""

    def __init__(self, entries, points, path: Path) -> None:
        self.path = path
        self.bundle = self
        self._entries, self._points = entries, points

    def has(self, name: str) -> bool:
        return True

    def json(self, name: str):
        return self._entries

    def array(self, name: str):
        return self._points


def test_a_malformed_pair_cache_is_a_clear_error(tmp_path):
    from geoloc_ros.pipelines.refine_map import read_pair_cache

    points = np.arange(12.0).reshape(3, 4)
    good = [{"key": "k1", "start": 0, "end": 3}, {"key": "k2", "start": 3, "end": 3}]
    cache = read_pair_cache(_CacheBundle(good, points, tmp_path))  # type: ignore[arg-type]
    assert cache["k2"] is None
    np.testing.assert_array_equal(cache["k1"][1], points[:, 2:])
    bad = [
        ([{"key": "k1", "start": 0, "end": 4}], points, r"pairs.json: entry 0: rows \[0, 4\) outside"),
        ([{"key": "k1"}], points, r"pairs.json: entry 0 needs key, start and end"),
        ({"key": "k1"}, points, r"pairs.json: expected a list"),
        (good, points[:, :3], r"pair_points.npy: expected \(K, 4\)"),
    ]
    for entries, array, message in bad:
        with pytest.raises(RefineError, match=message):
            read_pair_cache(_CacheBundle(entries, array, tmp_path))  # type: ignore[arg-type]


def test_survey_anchors_come_from_pnp_poses_of_mostly_one_panorama():
    from geoloc_ros.evaluation.groundtruth import GroundTruthAtStamps, GroundTruthStatus
    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.pipelines.refine_map import frame_anchors

    pano_of_view = np.array([0, 0, 1, 1, 2])
    cov = np.diag([0.04, 0.04, 1e-4])

    def estimate(k: int, method: str, views: list[list[int]]) -> PoseEstimate:
        return PoseEstimate.planar(k, 10.0 + k, 5.0, 0.3, cov, info={"method": method, "views": views})

    estimates = [
        estimate(0, "pnp", [[0, 90], [2, 10]]),  # 90 % from panorama 0: an anchor
        estimate(1, "essential", [[4, 100]]),  # the fallback of a panorama without depth: not one
        estimate(2, "pnp", [[1, 60], [3, 40]]),  # two panoramas share it: not one
        estimate(3, "pnp", [[2, 50], [3, 50]]),  # panorama 1 alone, but no truth at its stamp
        estimate(4, "pnp", [[3, 30]]),  # panorama 1 alone: an anchor
    ]
    status = np.full(5, GroundTruthStatus.VALID)
    status[3] = GroundTruthStatus.IN_GAP
    at = GroundTruthAtStamps(np.arange(5), np.ones((5, 3)), np.full(5, 0.2), status)
    anchors = frame_anchors(estimates, at, pano_of_view, RefineConfig())
    assert [a.panorama for a in anchors] == [0, 1]
    first = anchors[0]
    np.testing.assert_allclose(first.estimated_xy, [10.0, 5.0])
    assert first.estimated_yaw == pytest.approx(0.3) and first.true_yaw == pytest.approx(0.2)
    # The frame's own noise where above the floors (0.1 m, 0.15°).
    assert first.sigma_m == pytest.approx(0.2) and first.sigma_rad == pytest.approx(0.01)
