"""The query path in one object: features -> words (both vocabularies) -> TF-IDF scores -> top-K."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from geoloc_ros.bovw.errors import RetrievalIndexError
from geoloc_ros.bovw.features import FeatureSet
from geoloc_ros.bovw.index import QueryConfig, RetrievalResult, ScoringIndex
from geoloc_ros.bovw.vocabulary import Vocabularies


@dataclass(frozen=True)
class RetrievalTimings:
    """Durations of the last query (measured with a monotonic clock), in milliseconds."""

    quantize_ms: float
    score_ms: float  # scoring and top-K


class Retriever:
    """Vocabularies and an index that belong together, queried with a :class:`QueryConfig`.

    On board, give it ``vocabularies.with_quantizer("ivf")``: the same words, several times
    faster to assign than the exact flat quantiser the map is built with (see
    bench/bench_retrieval_scaling.py). Not thread-safe (it records the last query's timings);
    use one per thread.
    """

    def __init__(
        self, vocabularies: Vocabularies, index: ScoringIndex, config: QueryConfig | None = None
    ) -> None:
        expected = dict(zip(index.bag_names, index.bag_sizes, strict=True))
        if vocabularies.bag_sizes != expected:
            raise RetrievalIndexError(
                f"Retriever: vocabularies {vocabularies.bag_sizes} do not match the index's bags {expected}"
            )
        self.vocabularies = vocabularies
        self.index = index
        self.config = config if config is not None else QueryConfig()
        self.last_timings = RetrievalTimings(0.0, 0.0)

    def retrieve(self, features: FeatureSet, subset: np.ndarray | None = None) -> RetrievalResult:
        """Top-K reference views for a query image's features (optionally among ``subset``)."""
        start = time.perf_counter()
        words = self.vocabularies.words(features)
        quantized = time.perf_counter()
        result = self.index.query_with(words, self.config, subset)
        self.last_timings = RetrievalTimings(
            quantize_ms=(quantized - start) * 1e3, score_ms=(time.perf_counter() - quantized) * 1e3
        )
        return result
