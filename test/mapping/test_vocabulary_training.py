import numpy as np
import pytest

from geoloc_ros.bovw.vocabulary import Vocabulary, VocabularyConfig
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.vocabulary_training import allot_words, train_two_level


def test_allot_words_is_proportional_exact_and_feasible():
    sizes = np.array([1000, 10, 0, 3, 487])
    words = allot_words(sizes, 100)
    assert words.sum() == 100
    assert np.all(words <= sizes) and words[2] == 0 and np.all(words[sizes > 0] >= 1)
    assert abs(words[0] - 1000 * 100 / 1500) <= 1.5
    assert allot_words(np.array([5, 5]), 10).tolist() == [5, 5]
    with pytest.raises(MapBuildError, match="cannot make 11 words from 10"):
        allot_words(np.array([5, 5]), 11)


def clustered_descriptors(n_clusters: int, per_cluster: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.integers(20, 236, size=(n_clusters, 128))
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    noise = rng.normal(0, 4, size=(len(labels), 128))
    return np.clip(centres[labels] + noise, 0, 255).astype(np.uint8), labels


def test_two_level_vocabulary_separates_clusters_like_flat_kmeans():
    data, labels = clustered_descriptors(n_clusters=60, per_cluster=40, seed=1)
    config = VocabularyConfig(n_words=60, n_iter=10, seed=3)
    two_level = train_two_level(data, config)
    assert isinstance(two_level, Vocabulary) and two_level.n_words == 60
    words = two_level.quantize(data)
    # Each true cluster maps to one word (and each word to one cluster): a clean partition.
    purity = np.mean([np.bincount(words[labels == c]).max() / 40 for c in range(60)])
    flat_words = Vocabulary.train(data, config).quantize(data)
    flat_purity = np.mean([np.bincount(flat_words[labels == c]).max() / 40 for c in range(60)])
    assert purity >= 0.95 and purity >= flat_purity - 0.05
    # Deterministic for a seed.
    assert np.array_equal(train_two_level(data, config).centroids, two_level.centroids)


def test_two_level_subsamples_and_refuses_too_few_descriptors():
    data, _ = clustered_descriptors(n_clusters=10, per_cluster=30, seed=2)
    vocabulary = train_two_level(data, VocabularyConfig(n_words=20, sample_size=100, n_iter=5))
    assert vocabulary.n_words == 20
    with pytest.raises(MapBuildError, match="100 descriptors cannot make a 150-word"):
        train_two_level(data, VocabularyConfig(n_words=150, sample_size=100))
