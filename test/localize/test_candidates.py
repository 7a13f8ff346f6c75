"""Tracking candidates: best co-visible views first; on uncertain maps, several panoramas first.

Also the co-visibility model's lazy, bounded sampling on the tiny map."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.candidates import CovisibilityModel, tracking_candidates
from geoloc_ros.mapping.map import MapBundle

# Eight views near the camera: views 0-3 of panorama 0 score best, then panorama 1, then 2.
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.01], dtype=np.float32)
PANORAMA = np.array([0, 0, 0, 0, 1, 1, 2, 2])


def _candidates(**kwargs):
    views = np.arange(len(SCORES), dtype=np.int64)
    bundle = SimpleNamespace(views_near=lambda xy, radius: views[::-1].copy())
    model = SimpleNamespace(scores=lambda pose, camera, nearby: SCORES[nearby])
    camera = PinholeCamera.from_hfov(640, 480, 60.0)
    return tracking_candidates(model, bundle, Pose3D.identity(), camera, 45.0, 4, 0.05, **kwargs)


def test_best_views_first_and_weak_ones_dropped():
    out = _candidates()
    assert out.views.tolist() == [0, 1, 2, 3]
    assert out.mode == "tracking"
    assert 7 not in _candidates(view_panorama=PANORAMA, min_panoramas=5).views.tolist()


def test_several_panoramas_lead_when_asked():
    out = _candidates(view_panorama=PANORAMA, min_panoramas=3)
    # The best view of each of the three panoramas, then the rest by score.
    assert out.views.tolist() == [0, 4, 6, 1]
    np.testing.assert_allclose(out.scores, SCORES[[0, 4, 6, 1]])
    assert _candidates(view_panorama=PANORAMA, min_panoramas=1).views.tolist() == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def bundle(tiny_map_dir):
    return MapBundle.open(tiny_map_dir, verify="none")


def test_covisibility_samples_lazily_with_a_bounded_cache(bundle):
    small = CovisibilityModel(bundle, 16, max_views=3)
    large = CovisibilityModel(bundle, 16)
    views = np.arange(min(8, bundle.n_views))
    pose = bundle.views.pose(int(views[0]))
    expected = large.scores(pose, bundle.camera, views)
    assert np.allclose(small.scores(pose, bundle.camera, views), expected, equal_nan=True)
    assert len(small._samples) == 3 and len(large._samples) == len(views)
    # A view sees itself better than it sees most others, and samples are its own points.
    assert expected[0] == expected.max() > 0
    points = bundle.points(int(views[1]))
    sample = large.samples(views[1:2])[0]
    finite = sample[np.isfinite(sample[:, 0])]
    assert len(finite) and all(np.any(np.all(points == p, axis=1)) for p in finite)


def test_tracking_candidates_rank_the_views_seen_alike(bundle):
    model = CovisibilityModel(bundle, 32)
    view = bundle.n_views // 2
    found = tracking_candidates(model, bundle, bundle.views.pose(view), bundle.camera, 30.0, 5, 0.01)
    assert found.mode == "tracking" and view in found.views[:2]
    assert np.all(np.diff(found.scores) <= 0)
