import faiss
import numpy as np
import pytest
from ukbench import (
    extract_all,
    find_ukbench_images,
    ranked_results,
    train_vocabularies,
    ukbench_score,
)

from geoloc_ros.bovw.errors import BovwError
from geoloc_ros.bovw.features import FeatureConfig


def test_ukbench_score_counts_same_group_results():
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    perfect = np.array([[0, 1, 2, 3], [1, 0, 2, 3]])
    assert ukbench_score(perfect, groups) == 4.0
    half = np.array([[0, 4, 1, 5], [1, 6, 7, 5]])
    assert ukbench_score(half, groups) == pytest.approx((2 + 1) / 2)


def test_missing_images_raise(tmp_path):
    with pytest.raises(BovwError, match=r"no ukbenchNNNNN\.jpg"):
        find_ukbench_images(tmp_path)


@pytest.fixture
def one_faiss_thread():
    # Two OpenMP threads on a busy 2-core machine spin against each other; one is faster there.
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def test_bovw_ukbench_score_meets_the_floor(shared_dir, one_faiss_thread):
    images = find_ukbench_images(shared_dir / "datasets" / "ukbench-subset")
    assert len(images.paths) == 56
    features = extract_all(images.paths, FeatureConfig())
    # The seed's vocabulary sizes; fewer k-means iterations on a sample keep the test fast
    # (bench/bench_ukbench.py trains on everything).
    vocabularies = train_vocabularies(
        features, {"sift": 5000, "mser": 2000}, seed=0, n_iter=8, sample_size=20_000
    )
    words = [vocabularies.words(f) for f in features]
    ranked = ranked_results(words, vocabularies.bag_sizes, {"sift": 0.7, "mser": 0.3})
    score = ukbench_score(ranked, images.groups)
    assert score >= 3.85, f"UKBench score {score:.3f} below the 3.85 floor"
