import json
import pickle

import numpy as np
import pytest

from geoloc_ros.bovw.errors import DescriptorError, VocabularyError
from geoloc_ros.bovw.features import FeatureExtractor, FeatureKind
from geoloc_ros.bovw.vocabulary import (
    DescriptorSampler,
    Vocabularies,
    Vocabulary,
    VocabularyConfig,
)
from geoloc_ros.errors import ConfigError


def clustered_descriptors(n_clusters: int, per_cluster: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(10, 200, (n_clusters, 128))
    points = centres.repeat(per_cluster, axis=0) + rng.normal(0, 4, (n_clusters * per_cluster, 128))
    return np.clip(np.rint(points), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def descriptors() -> np.ndarray:
    return clustered_descriptors(40, 50, seed=0)


def test_training_is_deterministic_for_a_seed(descriptors):
    config = VocabularyConfig(n_words=32, n_iter=10, seed=7, sample_size=1500)
    first = Vocabulary.train(descriptors, config)
    second = Vocabulary.train(descriptors, config)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    other = Vocabulary.train(descriptors, config.model_copy(update={"seed": 8}))
    assert not np.array_equal(first.centroids, other.centroids)


def test_flat_quantisation_is_the_nearest_centroid(descriptors):
    vocab = Vocabulary.train(descriptors, VocabularyConfig(n_words=32, n_iter=5))
    words = vocab.quantize(descriptors)
    assert words.dtype == np.int32 and words.shape == (len(descriptors),)
    d2 = ((descriptors[:, None, :].astype(np.float64) - vocab.centroids[None].astype(np.float64)) ** 2).sum(
        -1
    )
    nearest_d2 = d2.min(axis=1)
    # Equal up to float ties: the chosen centroid is at the minimum distance.
    np.testing.assert_allclose(d2[np.arange(len(words)), words], nearest_d2, rtol=1e-5)


def test_ivf_quantiser_agrees_with_flat_on_clustered_data(descriptors):
    vocab = Vocabulary.train(descriptors, VocabularyConfig(n_words=40, n_iter=10))
    ivf = Vocabulary(vocab.centroids, vocab.config.model_copy(update={"quantizer": "ivf", "ivf_probe": 4}))
    agreement = np.mean(ivf.quantize(descriptors) == vocab.quantize(descriptors))
    assert agreement > 0.95


def test_too_few_descriptors_and_bad_inputs_raise():
    with pytest.raises(VocabularyError, match="10 descriptors for 32 words"):
        Vocabulary.train(np.zeros((10, 128), np.uint8), VocabularyConfig(n_words=32))
    with pytest.raises(DescriptorError, match="uint8"):
        Vocabulary.train(np.zeros((100, 128), np.float32), VocabularyConfig(n_words=2))
    vocab = Vocabulary.train(clustered_descriptors(4, 20, 1), VocabularyConfig(n_words=4))
    with pytest.raises(DescriptorError, match=r"shape \(N, 128\)"):
        vocab.quantize(np.zeros((5, 64), np.uint8))
    assert vocab.quantize(np.zeros((0, 128), np.uint8)).shape == (0,)
    with pytest.raises(VocabularyError, match="n_words"):
        Vocabulary(vocab.centroids, VocabularyConfig(n_words=5))


def test_save_and_memory_mapped_load_round_trip(tmp_path, descriptors):
    vocab = Vocabulary.train(descriptors, VocabularyConfig(n_words=16, n_iter=5, quantizer="ivf"))
    vocab.save(tmp_path / "vocab", "sift")
    loaded = Vocabulary.load(tmp_path / "vocab", "sift")
    assert isinstance(loaded.centroids, np.memmap)
    assert loaded.config == vocab.config
    np.testing.assert_array_equal(loaded.centroids, vocab.centroids)
    np.testing.assert_array_equal(loaded.quantize(descriptors), vocab.quantize(descriptors))


def test_load_errors_name_the_file(tmp_path, descriptors):
    with pytest.raises(VocabularyError, match=r"sift\.vocabulary\.json: vocabulary file not found"):
        Vocabulary.load(tmp_path, "sift")
    vocab = Vocabulary.train(descriptors, VocabularyConfig(n_words=8, n_iter=3))
    vocab.save(tmp_path / "v", "sift")
    meta_path = tmp_path / "v" / "sift.vocabulary.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(VocabularyError, match="format 99"):
        Vocabulary.load(tmp_path / "v", "sift")
    meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], "n_words": -1}}))
    with pytest.raises(ConfigError, match="n_words"):
        Vocabulary.load(tmp_path / "v", "sift")
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "v" / "sift.centroids.npy").unlink()
    with pytest.raises(VocabularyError, match=r"centroids\.npy"):
        Vocabulary.load(tmp_path / "v", "sift")


def test_sampler_is_bounded_deterministic_and_independent_of_batching(descriptors):
    one = DescriptorSampler(300, seed=3)
    one.add(descriptors)
    many = DescriptorSampler(300, seed=3)
    for start in range(0, len(descriptors), 170):
        many.add(descriptors[start : start + 170])
    assert one.sample().shape == (300, 128)
    np.testing.assert_array_equal(one.sample(), many.sample())
    assert many.seen == len(descriptors)
    small = DescriptorSampler(10_000, seed=0)
    small.add(descriptors[:50])
    assert len(small.sample()) == 50


def test_vocabularies_route_each_feature_kind_to_its_bag(textured_image, tmp_path):
    features = FeatureExtractor().extract(textured_image)
    sift = features.descriptors[features.kind == FeatureKind.SIFT]
    mser = features.descriptors[features.kind == FeatureKind.MSER]
    vocabularies = Vocabularies.train(
        {"sift": sift, "mser": mser},
        {"sift": VocabularyConfig(n_words=20, n_iter=5), "mser": VocabularyConfig(n_words=8, n_iter=5)},
    )
    assert vocabularies.bag_sizes == {"sift": 20, "mser": 8}
    words = vocabularies.words(features)
    assert len(words["sift"]) == len(sift) and len(words["mser"]) == len(mser)
    np.testing.assert_array_equal(words["mser"], vocabularies.by_bag["mser"].quantize(mser))
    vocabularies.write_into(tmp_path)
    loaded = Vocabularies.load(tmp_path)
    np.testing.assert_array_equal(loaded.words(features)["sift"], words["sift"])
    with pytest.raises(VocabularyError, match="bags must be among"):
        Vocabularies({"orb": vocabularies.by_bag["sift"]})


def test_vocabulary_pickles_for_worker_processes(descriptors):
    vocab = Vocabulary.train(descriptors, VocabularyConfig(n_words=16, n_iter=3, quantizer="ivf"))
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone.config == vocab.config
    np.testing.assert_array_equal(clone.quantize(descriptors), vocab.quantize(descriptors))
