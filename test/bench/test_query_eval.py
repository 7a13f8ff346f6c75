import numpy as np
import pytest
from query_eval import HitRates, drive_frames, panorama_distances

from geoloc_ros.bovw.features import FeatureExtractor
from geoloc_ros.bovw.index import top_k_indices
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.map import MapBundle


def test_hit_rates():
    distances = np.array([[3.0, 40.0], [30.0, 10.0], [30.0, 26.0], [25.0, 0.0]])
    rates = HitRates.of(distances, 25.0)
    assert (rates.top1, rates.topk, rates.n_frames, rates.top_k) == (0.5, 0.75, 4, 2)
    with pytest.raises(MapBuildError, match="shape"):
        HitRates.of(np.zeros(3), 25.0)


def test_panorama_distances_and_drive_frames(tiny_map_dir, tiny_sim_dir):
    bundle = MapBundle.open(tiny_map_dir, verify="none")
    frames = list(drive_frames(tiny_sim_dir / "drive", bundle.camera, step=10))
    with np.load(tiny_sim_dir / "drive" / "groundtruth.npz") as truth:
        stamps, positions = truth["stamp_ns"], truth["position_enu"]
    assert [f.index for f in frames] == list(range(0, len(stamps), 10))
    for frame in frames:
        assert frame.image.shape == (bundle.camera.height, bundle.camera.width, 3)
        assert np.array_equal(frame.position_enu, positions[np.flatnonzero(stamps == frame.stamp_ns)[0]])
    views = bundle.views_of_panorama(2)[:3]
    true_xy = np.array([[1.0, 2.0]])
    expected = np.linalg.norm(bundle.panorama_positions[2, :2] - true_xy[0])
    assert np.allclose(panorama_distances(bundle, views[None, :], true_xy), expected)
    with pytest.raises(MapBuildError, match="ground truth not found"):
        next(drive_frames(tiny_sim_dir, bundle.camera))


@pytest.mark.slow
def test_pure_retrieval_finds_the_place_on_the_tiny_drive(tiny_map_dir, tiny_sim_dir):
    """The acceptance check of bench/bench_map_retrieval.py, on the tiny scenario (73 frames)."""
    bundle = MapBundle.open(tiny_map_dir, verify="none")
    retriever = bundle.retriever()
    extractor = FeatureExtractor(bundle.query_feature_config(fast=True))
    truth, ranked, random_ranked = [], [], []
    rng = np.random.default_rng(0)
    for frame in drive_frames(tiny_sim_dir / "drive", bundle.camera):
        truth.append(frame.position_enu[:2])
        words = bundle.vocabularies.words(extractor.extract(frame.image))
        scores, _ = bundle.index.scores(words, bundle.query_config.weights)
        ranked.append(top_k_indices(scores, 10))
        assert np.array_equal(ranked[-1], retriever.retrieve(extractor.extract(frame.image)).view_ids)
        random_ranked.append(rng.choice(bundle.n_views, 10, replace=False))
    rates = HitRates.of(panorama_distances(bundle, np.array(ranked), np.array(truth)), 25.0)
    chance = HitRates.of(panorama_distances(bundle, np.array(random_ranked), np.array(truth)), 25.0)
    assert rates.n_frames > 60
    assert rates.top1 >= 0.85 and rates.topk >= 0.98
    assert rates.top1 > chance.top1 + 0.25
