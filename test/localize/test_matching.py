"""Matching on known data: brute-force (ratio + mutual) and guided by a predicted pose."""

import numpy as np
import pytest

from geoloc_ros.bovw.features import FeatureKind, FeatureSet
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import optical_pose_from_body
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import MatchingConfig
from geoloc_ros.localize.matching import ViewData, match_guided, match_views
from geoloc_ros.localize.pose import project
from geoloc_ros.localize.query import QueryFrame

CAMERA = PinholeCamera.from_hfov(640, 480, 57.6)


def random_descriptors(n: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 vectors of RootSIFT-like norm (about 512)."""
    raw = rng.random((n, 128)) ** 3
    return np.clip(np.round(raw / np.linalg.norm(raw, axis=1, keepdims=True) * 512), 0, 255).astype(np.uint8)


def perturb(descriptors: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    return np.clip(descriptors + rng.normal(0, sigma, descriptors.shape), 0, 255).astype(np.uint8)


def query_frame(xy: np.ndarray, descriptors: np.ndarray, kind: np.ndarray | None = None) -> QueryFrame:
    n = len(xy)
    features = FeatureSet(
        keypoints_xy=np.asarray(xy, np.float32),
        size=np.full(n, 4.0, np.float32),
        angle=np.zeros(n, np.float32),
        response=np.ones(n, np.float32),
        kind=np.zeros(n, np.uint8) if kind is None else kind.astype(np.uint8),
        descriptors=descriptors,
        image_size=CAMERA.size,
    )
    return QueryFrame(0, np.zeros((480, 640), np.uint8), features, bool(kind is not None), 0.0)


def view_data(view: int, xy: np.ndarray, descriptors: np.ndarray, points: np.ndarray, kind=None) -> ViewData:
    d = descriptors.astype(np.float32)
    points32 = np.asarray(points, np.float32)
    rows = np.flatnonzero(np.isfinite(points32[:, 0]))
    return ViewData(
        view=view,
        descriptors=d,
        squared_norms=np.einsum("ij,ij->i", d, d),
        kind=np.zeros(len(d), np.uint8) if kind is None else kind.astype(np.uint8),
        keypoints_xy=np.asarray(xy, np.float32),
        points_map=points32,
        point_rows=rows,
        points64=points32[rows].astype(np.float64),
    )


def pairs(matches, rows) -> set[tuple[int, int]]:
    return set(zip(matches.query_index[rows].tolist(), matches.reference_index[rows].tolist(), strict=True))


def test_brute_force_matching_finds_the_true_pairs_per_view():
    rng = np.random.default_rng(0)
    shared = random_descriptors(100, rng)
    query = query_frame(rng.uniform(0, 400, (100, 2)), shared)
    # View 7 holds the first 60 query features (shuffled, noisy) among 200 distractors; view 9 the last 50.
    order = rng.permutation(60)
    v7_desc = np.concatenate([perturb(shared[:60][order], rng), random_descriptors(200, rng)])
    v9_desc = np.concatenate([random_descriptors(30, rng), perturb(shared[50:], rng)])
    views = [
        view_data(7, np.zeros((260, 2)), v7_desc, np.arange(780.0).reshape(260, 3)),
        view_data(9, np.zeros((80, 2)), v9_desc, np.full((80, 3), np.nan)),
    ]
    matches = match_views(query, views, MatchingConfig(ratio=0.8))
    np.testing.assert_array_equal(matches.views, [7, 9])
    in7 = matches.view_slot == 0
    expected7 = {(int(order[r]), r) for r in range(60)}
    assert (
        set(zip(matches.query_index[in7].tolist(), matches.reference_index[in7].tolist(), strict=True))
        == expected7
    )
    in9 = matches.view_slot == 1
    assert set(
        zip(matches.query_index[in9].tolist(), matches.reference_index[in9].tolist(), strict=True)
    ) == {(50 + k, 30 + k) for k in range(50)}
    # The pooled matches carry the references' 3D points (NaN where the view has no depth).
    np.testing.assert_array_equal(matches.points_map[in7], views[0].points_map[matches.reference_index[in7]])
    assert not matches.has_point[in9].any()
    np.testing.assert_array_equal(matches.per_view(), [60, 50])


def test_ratio_test_rejects_ambiguous_features_and_kinds_do_not_mix():
    rng = np.random.default_rng(1)
    shared = random_descriptors(40, rng)
    kind = np.array([FeatureKind.SIFT] * 20 + [FeatureKind.MSER] * 20)
    query = query_frame(np.zeros((40, 2)), shared, kind)
    # The view repeats feature 0 twice (a repeated window), and holds the MSER features as SIFT.
    reference = np.concatenate(
        [perturb(shared[:20], rng), perturb(shared[:1], rng), perturb(shared[20:], rng)]
    )
    ref_kind = np.array([FeatureKind.SIFT] * 21 + [FeatureKind.SIFT] * 20)
    views = [view_data(1, np.zeros((41, 2)), reference, np.zeros((41, 3)), ref_kind)]
    matches = match_views(query, views, MatchingConfig(ratio=0.8))
    assert sorted(matches.query_index.tolist()) == list(range(1, 20))


def test_guided_matching_uses_the_predicted_projection():
    rng = np.random.default_rng(2)
    truth = optical_pose_from_body(Pose3D.from_xyz_ypr([0.0, 0.0, 1.5], 0.3))
    uv = rng.uniform([30, 30], [610, 450], (150, 2))
    points = truth.transform_points(CAMERA.backproject(uv, rng.uniform(6, 30, 150)))
    descriptors = random_descriptors(150, rng)
    # Half the features look alike in pairs (a facade's repeated windows): brute force rejects them.
    descriptors[75:] = perturb(descriptors[:75], rng, 1.0)
    query = query_frame(uv + rng.normal(0, 0.5, uv.shape), perturb(descriptors, rng, 2.0))
    view = view_data(3, uv, descriptors, points)
    brute = match_views(query, [view], MatchingConfig(ratio=0.8))
    assert len(brute) < 60
    predicted = Pose3D.from_xyz_ypr([0.1, -0.05, 0.0], 0.002).compose(truth)
    guided = match_guided(query, [view], predicted, CAMERA, 16.0, MatchingConfig(ratio=0.8))
    assert len(guided) > 140
    np.testing.assert_array_equal(guided.query_index, guided.reference_index)  # all correct
    projected, _ = project(truth, guided.points_map, CAMERA)
    assert np.all(np.linalg.norm(projected - guided.query_xy, axis=1) < 3.0)
    # Far from where the prediction puts the points, nothing matches.
    wrong = Pose3D.from_xyz_ypr([0.0, 0.0, 0.0], 0.3).compose(truth)
    assert len(match_guided(query, [view], wrong, CAMERA, 16.0, MatchingConfig(ratio=0.8))) < 10


def test_guided_matching_takes_one_predicted_pose_per_view():
    """A view whose points were moved (its panorama's stated pose is off) matches when its own
    predicted pose is moved the same way, and not with the shared one."""
    rng = np.random.default_rng(4)
    truth = optical_pose_from_body(Pose3D.from_xyz_ypr([0.0, 0.0, 1.5], 0.3))
    uv = rng.uniform([30, 30], [610, 450], (120, 2))
    points = truth.transform_points(CAMERA.backproject(uv, rng.uniform(6, 30, 120)))
    descriptors = random_descriptors(120, rng)
    query = query_frame(uv + rng.normal(0, 0.5, uv.shape), perturb(descriptors, rng, 2.0))
    offset = Pose3D.from_xyz_ypr([3.0, -2.0, 0.0], np.radians(5.0))  # the panorama's error
    moved = view_data(5, uv, descriptors, offset.transform_points(points))
    exact = view_data(6, uv, descriptors, points)
    config = MatchingConfig(ratio=0.8)
    shared = match_guided(query, [exact, moved], truth, CAMERA, 16.0, config)
    per_view = match_guided(query, [exact, moved], [truth, offset.compose(truth)], CAMERA, 16.0, config)
    found = np.count_nonzero(per_view.views[per_view.view_slot] == 5)
    assert found > 110
    assert np.count_nonzero(shared.views[shared.view_slot] == 5) < found / 3
    assert np.count_nonzero(per_view.views[per_view.view_slot] == 6) > 110
    with pytest.raises(ValueError, match="2 views"):
        match_guided(query, [exact, moved], [truth], CAMERA, 16.0, config)


def test_matching_without_features_or_views_is_empty():
    rng = np.random.default_rng(3)
    query = query_frame(np.zeros((0, 2)), np.zeros((0, 128), np.uint8))
    view = view_data(0, np.zeros((5, 2)), random_descriptors(5, rng), np.zeros((5, 3)))
    assert len(match_views(query, [view], MatchingConfig())) == 0
    assert len(match_guided(query, [view], Pose3D.identity(), CAMERA, 10.0, MatchingConfig())) == 0
