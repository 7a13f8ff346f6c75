import numpy as np
import pytest

from geoloc_ros.localize.candidates import CovisibilityModel, tracking_candidates
from geoloc_ros.mapping.map import MapBundle


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
