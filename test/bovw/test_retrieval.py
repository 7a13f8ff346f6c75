import numpy as np
import pytest

from geoloc_ros.bovw.errors import RetrievalIndexError
from geoloc_ros.bovw.features import FeatureExtractor, FeatureKind
from geoloc_ros.bovw.index import QueryConfig, TfIdfIndex
from geoloc_ros.bovw.retrieval import Retriever
from geoloc_ros.bovw.vocabulary import Vocabularies, VocabularyConfig


@pytest.fixture(scope="module")
def scenes(make_image):
    extractor = FeatureExtractor()
    return [extractor.extract(make_image(seed)) for seed in range(6)]


@pytest.fixture(scope="module")
def vocabularies(scenes) -> Vocabularies:
    descriptors = {
        "sift": np.concatenate([f.descriptors[f.kind == FeatureKind.SIFT] for f in scenes]),
        "mser": np.concatenate([f.descriptors[f.kind == FeatureKind.MSER] for f in scenes]),
    }
    configs = {"sift": VocabularyConfig(n_words=64, n_iter=8), "mser": VocabularyConfig(n_words=16, n_iter=8)}
    return Vocabularies.train(descriptors, configs)


def test_retriever_finds_the_same_scene_from_a_shifted_view(scenes, vocabularies, make_image):
    index = TfIdfIndex.build(vocabularies.bag_sizes, [vocabularies.words(f) for f in scenes])
    retriever = Retriever(vocabularies.with_quantizer("ivf", ivf_probe=4), index, QueryConfig(top_k=3))
    for seed in (1, 4):
        # Another "camera": the scene cropped and shifted by 12 px.
        image = make_image(seed)
        shifted = np.ascontiguousarray(image[12:, 12:])
        result = retriever.retrieve(FeatureExtractor().extract(shifted))
        assert result.view_ids[0] == seed
        assert len(result.view_ids) == 3
    assert retriever.last_timings.quantize_ms > 0 and retriever.last_timings.score_ms > 0
    subset = retriever.retrieve(scenes[2], subset=np.array([0, 2, 5]))
    assert subset.view_ids[0] == 2 and set(subset.view_ids) <= {0, 2, 5}


def test_retriever_rejects_vocabularies_of_another_index(vocabularies):
    index = TfIdfIndex({"sift": 10, "mser": 16})
    with pytest.raises(RetrievalIndexError, match="do not match"):
        Retriever(vocabularies, index)
