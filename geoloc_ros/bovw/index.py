"""TF-IDF inverted index over several bags of visual words, cosine scoring, top-K retrieval.

Every reference view is a bag of word ids per vocabulary ("bags", e.g. ``sift`` and ``mser``). The
words of all bags live in one column space: bag ``b``'s word ``w`` is column ``offset[b] + w``.

Weighting (Sivic & Zisserman 2003): a view's weight for word ``w`` is ``tf(count) * idf[w]`` with
``idf[w] = log((N + 1) / (df[w] + 1))`` (``N`` views, ``df[w]`` of them contain ``w``; the +1 keeps
words unseen when the IDF was computed finite, and words in every view weigh ~0), and ``tf`` is
the raw count or its square root (``IndexConfig.tf_transform``; the square root damps "bursty"
repeated structures such as windows of one facade, Jégou et al. 2009). Each bag's part of a
vector is L2-normalised on its own, so a query's score for a view is

    score(view) = sum_b weight_b * cos_b(query, view)

with ``weight_b`` chosen per query (default 0.7 SIFT / 0.3 MSER, ``QueryConfig``).

Storage (all arrays memory-mappable ``.npy``):

* ``counts``: view-major CSR (views x words), uint16 word counts; the source of truth.
* ``postings``: word-major CSR (words x views), float32 normalised weights: the inverted index.
  A query touches only its words' rows (posting lists).
* ``df``, ``idf``, ``norms`` (views x bags).

IDF policy: the IDF is computed from the views present when the index is built and then **kept**
when views are added later (:meth:`TfIdfIndex.add_views`): new views are weighted with it, so the
scores of existing views do not change and an incremental update stays consistent with what was
built before. Document frequencies keep counting; :meth:`TfIdfIndex.refresh_idf` (or
``add_views(..., refresh_idf=True)``) recomputes the IDF from every view and re-weights them all.

Query cost is the number of postings touched, ``sum(df[w])`` over the query's words. With
``QueryConfig.max_touched_postings`` set, a query whose words would touch more than that many
postings is answered in two stages, so that latency stays bounded on very large maps: (1) the
query drops its lowest-weighted words (also the most frequent, low-IDF ones, which carry least of
the ranking) until its lists fit in the cap, and every view is scored with the rest; since all
terms are non-negative these scores are lower bounds of the exact ones; (2) the
``rescore_candidates`` best views of stage 1 are scored exactly from their own rows (the
view-major counts). Their exact scores are at least their stage-1 scores, which are at least
every other view's, so the returned top-K is the exact top-K among the candidates
(``RetrievalResult.exact`` is False). bench/bench_retrieval_scaling.py measures what it costs in
accuracy. When a subset of views is given (a radius around a position prior), the subset's rows
are scored directly if that touches fewer entries than the posting lists (exact).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator

from geoloc_ros.bovw.errors import RetrievalIndexError
from geoloc_ros.bovw.kinds import DEFAULT_FEATURE_KINDS, feature_kind
from geoloc_ros.config import StrictModel, validate_mapping
from geoloc_ros.io.atomic import atomic_directory, atomic_write_json
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

INDEX_FORMAT = 1
_COUNT_MAX = np.iinfo(np.uint16).max

WordsByBag = Mapping[str, np.ndarray]
"""Word ids (int array, one entry per feature, repeats allowed) of one image, per bag name."""


class IndexConfig(StrictModel):
    """Build-time settings, stored with the index."""

    tf_transform: Literal["raw", "sqrt"] = Field("raw", description="term frequency: count or sqrt(count)")


class QueryConfig(StrictModel):
    """Query-time settings; can differ from query to query without touching the index."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {name: feature_kind(name).index_weight for name in DEFAULT_FEATURE_KINDS},
        description="weight of each bag's cosine (default: each built-in kind's index_weight)",
    )
    top_k: int = Field(10, ge=1)
    max_touched_postings: int | None = Field(
        2_000_000,
        ge=1,
        description="cap on the postings a query reads (None: exact); reached by maps of >~20k views",
    )
    rescore_candidates: int = Field(
        300, ge=1, description="views rescored exactly when the cap prunes a query"
    )

    @model_validator(mode="after")
    def _enough_candidates(self) -> QueryConfig:
        if self.rescore_candidates < self.top_k:
            raise ValueError(
                f"rescore_candidates ({self.rescore_candidates}) must be >= top_k ({self.top_k})"
            )
        return self

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError(f"bag weights must be >= 0 with at least one > 0, got {value}")
        return value


@dataclass(frozen=True)
class RetrievalResult:
    """Best views first. ``exact`` is False when the query was pruned by the postings cap."""

    view_ids: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) float32
    exact: bool = True


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first; ties broken by the smaller position."""
    n = len(scores)
    if k >= n:
        candidates = np.arange(n)
    else:
        candidates = np.argpartition(-scores, k - 1)[:k]
        # argpartition may cut a tie arbitrarily: take every position tied with the k-th score.
        kth = scores[candidates].min()
        candidates = np.flatnonzero(scores >= kth)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


def _narrow_indices(matrix: sp.csr_array) -> sp.csr_array:
    """The same CSR with int32 indices and indptr when they fit (halves index bytes and traffic)."""
    limit = np.iinfo(np.int32).max
    if matrix.nnz < limit and max(matrix.shape) < limit and matrix.indices.dtype != np.int32:
        return sp.csr_array(
            (matrix.data, matrix.indices.astype(np.int32), matrix.indptr.astype(np.int32)), shape=matrix.shape
        )
    return matrix


class ScoringIndex(Protocol):
    """What a :class:`~geoloc_ros.bovw.retrieval.Retriever` queries: a :class:`TfIdfIndex`, or one
    read tile by tile (``geoloc_ros.mapping.paging.TilePagedIndex``)."""

    @property
    def bag_names(self) -> tuple[str, ...]: ...

    @property
    def bag_sizes(self) -> tuple[int, ...]: ...

    @property
    def n_views(self) -> int: ...

    def scores(
        self,
        words: WordsByBag,
        weights: Mapping[str, float] | None = None,
        subset: np.ndarray | None = None,
        max_touched_postings: int | None = None,
        rescore_candidates: int = 300,
    ) -> tuple[np.ndarray, bool]: ...

    def query_with(
        self, words: WordsByBag, config: QueryConfig, subset: np.ndarray | None = None
    ) -> RetrievalResult: ...


class TfIdfIndex:
    """Inverted index of TF-IDF weighted bags of words (see the module docstring).

    Create with :meth:`build` (or an empty index and :meth:`add_views`), query with :meth:`query`
    or :meth:`scores`, persist with :meth:`write_into`/:meth:`save` and :meth:`load`.
    """

    def __init__(self, bag_sizes: Mapping[str, int], config: IndexConfig | None = None) -> None:
        if not 0 < len(bag_sizes) < 256:
            raise RetrievalIndexError(f"TfIdfIndex: 1 to 255 bags are supported, got {len(bag_sizes)}")
        for name, size in bag_sizes.items():
            if not isinstance(size, int | np.integer) or size < 1:
                raise RetrievalIndexError(f"TfIdfIndex: bag {name!r} has invalid vocabulary size {size!r}")
        self.config = config if config is not None else IndexConfig()
        self.bag_names: tuple[str, ...] = tuple(bag_sizes)
        self.bag_sizes: tuple[int, ...] = tuple(int(s) for s in bag_sizes.values())
        self.offsets = np.concatenate([[0], np.cumsum(self.bag_sizes)]).astype(np.int64)
        self.n_words = int(self.offsets[-1])
        self._bag_of_word = np.repeat(np.arange(len(self.bag_sizes), dtype=np.uint8), self.bag_sizes)
        self.counts = sp.csr_array((0, self.n_words), dtype=np.uint16)
        self.df = np.zeros(self.n_words, dtype=np.int64)
        self.idf = np.zeros(self.n_words, dtype=np.float32)
        self.idf_views = 0
        self.norms = np.zeros((0, len(self.bag_sizes)), dtype=np.float32)
        self.postings = sp.csr_array((self.n_words, 0), dtype=np.float32)
        self.header_only = False

    # ----------------------------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        bag_sizes: Mapping[str, int],
        views: Iterable[WordsByBag],
        config: IndexConfig | None = None,
        n_views: int | None = None,
    ) -> TfIdfIndex:
        """An index of ``views`` (word ids per bag, one mapping per view), IDF computed from them.

        ``n_views`` only sizes the progress bar when ``views`` is a generator.
        """
        index = cls(bag_sizes, config)
        index.add_views(views, refresh_idf=True, n_views=n_views)
        return index

    @property
    def n_views(self) -> int:
        return int(self.counts.shape[0])

    def add_views(
        self, views: Iterable[WordsByBag], refresh_idf: bool = False, n_views: int | None = None
    ) -> np.ndarray:
        """Append views (ids ``n_views, n_views+1, ...``, returned); the vocabulary is unchanged.

        The IDF is kept (see the module docstring) unless ``refresh_idf`` or the index was empty.
        Rebuilding the inverted lists costs O(total postings).
        """
        rows = [
            self._count_row(words, f"view {self.n_views + i}")
            for i, words in enumerate(progress_bar(views, desc="indexing views", unit="view", total=n_views))
        ]
        first = self.n_views
        if rows:
            lengths = np.array([len(r[0]) for r in rows], dtype=np.int64)
            indptr = np.concatenate([[0], np.cumsum(lengths)])
            indices = np.concatenate([r[0] for r in rows]) if lengths.sum() else np.zeros(0, np.int32)
            data = np.concatenate([r[1] for r in rows]) if lengths.sum() else np.zeros(0, np.uint16)
            new = sp.csr_array((data, indices, indptr), shape=(len(rows), self.n_words))
            self.counts = _narrow_indices(
                sp.csr_array(sp.vstack([self.counts, new], format="csr"), dtype=np.uint16)
            )
            self.df = self.df + np.bincount(indices, minlength=self.n_words)
        if refresh_idf or self.idf_views == 0:
            self._set_idf()
        self._reweight()
        logger.info("index holds %d views (%d added), %d postings", self.n_views, len(rows), self.counts.nnz)
        return np.arange(first, self.n_views, dtype=np.int64)

    def refresh_idf(self) -> None:
        """Recompute the IDF from every view now in the index and re-weight all of them."""
        self._set_idf()
        self._reweight()

    def _count_row(self, words: WordsByBag, where: str) -> tuple[np.ndarray, np.ndarray]:
        columns = self._columns(words, where)
        unique, counts = np.unique(columns, return_counts=True)
        return unique.astype(np.int32), np.minimum(counts, _COUNT_MAX).astype(np.uint16)

    def _columns(self, words: WordsByBag, where: str) -> np.ndarray:
        """Column ids of an image's words across bags, validated."""
        if not isinstance(words, Mapping):
            raise RetrievalIndexError(
                f"{where}: expected a mapping bag name -> word ids, got {type(words).__name__}"
            )
        unknown = set(words) - set(self.bag_names)
        if unknown:
            raise RetrievalIndexError(
                f"{where}: unknown bag(s) {sorted(unknown)}; the index has {self.bag_names}"
            )
        parts = []
        for b, name in enumerate(self.bag_names):
            ids = np.asarray(words.get(name, np.zeros(0, np.int64)))
            if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
                raise RetrievalIndexError(
                    f"{where}: bag {name!r}: expected a 1-D integer array, got {ids.dtype}{ids.shape}"
                )
            if ids.size and (ids.min() < 0 or ids.max() >= self.bag_sizes[b]):
                raise RetrievalIndexError(
                    f"{where}: bag {name!r}: word ids must be in [0, {self.bag_sizes[b]}), "
                    f"got [{ids.min()}, {ids.max()}]"
                )
            parts.append(ids.astype(np.int64) + self.offsets[b])
        return np.concatenate(parts)

    def _set_idf(self) -> None:
        n = self.n_views
        self.idf = np.log((n + 1.0) / (self.df + 1.0)).astype(np.float32)
        self.idf_views = n

    def _tf(self, counts: np.ndarray) -> np.ndarray:
        values = counts.astype(np.float32)
        return np.sqrt(values) if self.config.tf_transform == "sqrt" else values

    def _reweight(self) -> None:
        """Norms and inverted lists from counts and the current IDF.

        Per-entry temporaries are kept narrow (int32 rows, uint8 bags, float32 weights): a
        100k-view map has ~10^8 entries.
        """
        counts = self.counts
        n_bags = len(self.bag_sizes)
        row_of_entry = np.repeat(np.arange(self.n_views, dtype=np.int32), np.diff(counts.indptr))
        bag_of_entry = self._bag_of_word[counts.indices]
        weight = self._tf(counts.data)
        weight *= self.idf[counts.indices]
        norms = np.zeros((self.n_views, n_bags), dtype=np.float32)
        for b in range(n_bags):
            in_bag = bag_of_entry == b
            squares = weight[in_bag].astype(np.float64) ** 2
            norms[:, b] = np.sqrt(np.bincount(row_of_entry[in_bag], squares, minlength=self.n_views))
        self.norms = norms
        norm_of_entry = norms[row_of_entry, bag_of_entry]
        del row_of_entry, bag_of_entry
        np.divide(weight, norm_of_entry, out=weight, where=norm_of_entry > 0)
        weight[norm_of_entry <= 0] = 0.0
        del norm_of_entry
        by_view = sp.csr_array((weight, counts.indices, counts.indptr), shape=counts.shape)
        self.postings = _narrow_indices(sp.csr_array(by_view.T.tocsr(), dtype=np.float32))
        self.postings.sort_indices()

    # ------------------------------------------------------------------------------------ queries

    def _weights(self, weights: Mapping[str, float] | None) -> np.ndarray:
        chosen = dict(weights) if weights is not None else QueryConfig().weights
        unknown = set(chosen) - set(self.bag_names)
        if unknown:
            raise RetrievalIndexError(
                f"query weights: unknown bag(s) {sorted(unknown)}; the index has {self.bag_names}"
            )
        return np.array([float(chosen.get(name, 0.0)) for name in self.bag_names], dtype=np.float32)

    def query_vector(
        self, words: WordsByBag, weights: Mapping[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The query as sparse (columns, values): per-bag normalised TF-IDF times the bag weight."""
        if not self.header_only:
            self._require_views()
        columns = self._columns(words, "query")
        unique, counts = np.unique(columns, return_counts=True)
        value = self._tf(counts) * self.idf[unique]
        bag = self._bag_of_word[unique]
        norms = np.sqrt(np.bincount(bag, value.astype(np.float64) ** 2, minlength=len(self.bag_sizes)))
        scale = np.divide(self._weights(weights), norms, out=np.zeros(len(norms)), where=norms > 0)
        value = (value * scale[bag]).astype(np.float32)
        keep = value > 0
        return unique[keep].astype(np.int64), value[keep]

    def scores(
        self,
        words: WordsByBag,
        weights: Mapping[str, float] | None = None,
        subset: np.ndarray | None = None,
        max_touched_postings: int | None = None,
        rescore_candidates: int = 300,
    ) -> tuple[np.ndarray, bool]:
        """Combined cosine scores and whether they are all exact.

        Without ``subset``: float32 (n_views,) for every view. With ``subset`` (view ids or a
        boolean mask over views): float32 scores of those views, in the order of their ids. When
        the postings cap prunes the query, the ``rescore_candidates`` best views of the pruned
        query get their exact score and the others keep the pruned one (a lower bound, below
        every candidate's score): see the module docstring.
        """
        scores, candidates = self._scores(words, weights, subset, max_touched_postings, rescore_candidates)
        return scores, candidates is None

    def _scores(
        self,
        words: WordsByBag,
        weights: Mapping[str, float] | None,
        subset: np.ndarray | None,
        max_touched_postings: int | None,
        rescore_candidates: int,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (as :meth:`scores`) and, when the cap pruned the query, the positions of the
        rescored candidates in them (sorted), among which the top-K lies."""
        self._require_views()
        columns, values = self.query_vector(words, weights)
        ids = self._subset_ids(subset)
        touched = np.diff(self.postings.indptr)[columns]
        total = int(touched.sum())
        if ids is not None and int(np.diff(self.counts.indptr)[ids].sum()) <= total:
            return self._score_rows(ids, columns, values), None
        if max_touched_postings is None or total <= max_touched_postings:
            dense = self._score_postings(columns, values)
            return (dense if ids is None else dense[ids]), None
        pruned_columns, pruned_values = self._prune(columns, values, touched, max_touched_postings)
        dense = self._score_postings(pruned_columns, pruned_values)
        pool = dense if ids is None else dense[ids]
        best = np.sort(top_k_indices(pool, rescore_candidates))
        pool[best] = self._score_rows(best if ids is None else ids[best], columns, values)
        return pool, best

    def weight_rows(self, counts: sp.csr_array, norms: np.ndarray) -> sp.csr_array:
        """Normalised TF-IDF weights (what the posting lists hold, view-major) of some views' count
        rows ``counts`` (views x words, uint16) with their ``norms`` (views x bags): a query's
        combined score for those views is ``weight_rows(...) @ dense_query`` (see
        :meth:`dense_query`). What a tile-paged index keeps of each loaded tile."""
        bag_of_entry = self._bag_of_word[counts.indices]
        row_of_entry = np.repeat(np.arange(counts.shape[0], dtype=np.int32), np.diff(counts.indptr))
        weight = self._tf(counts.data)
        weight *= self.idf[counts.indices]
        norm_of_entry = np.asarray(norms, dtype=np.float32)[row_of_entry, bag_of_entry]
        np.divide(weight, norm_of_entry, out=weight, where=norm_of_entry > 0)
        weight[norm_of_entry <= 0] = 0.0
        return sp.csr_array((weight, counts.indices, counts.indptr), shape=(counts.shape[0], self.n_words))

    def dense_query(self, words: WordsByBag, weights: Mapping[str, float] | None = None) -> np.ndarray:
        """:meth:`query_vector` as a dense float32 vector over all words."""
        columns, values = self.query_vector(words, weights)
        query = np.zeros(self.n_words, dtype=np.float32)
        query[columns] = values
        return query

    def _score_postings(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of every view from the posting lists of the query's words only.

        The query's rows of the inverted index are gathered, then summed weighted by the query
        values in one pass (a transposed sparse matrix times a dense vector).
        """
        rows = self.postings[columns.astype(self.postings.indices.dtype)]
        return np.asarray(rows.T @ values, dtype=np.float32)

    def query(
        self,
        words: WordsByBag,
        top_k: int = 10,
        weights: Mapping[str, float] | None = None,
        subset: np.ndarray | None = None,
        max_touched_postings: int | None = None,
        rescore_candidates: int = 300,
    ) -> RetrievalResult:
        """The ``top_k`` views with the highest combined score (optionally among ``subset``)."""
        if top_k < 1:
            raise RetrievalIndexError(f"query: top_k must be >= 1, got {top_k}")
        if rescore_candidates < top_k:
            raise RetrievalIndexError(
                f"query: rescore_candidates ({rescore_candidates}) must be >= top_k ({top_k})"
            )
        scores, candidates = self._scores(words, weights, subset, max_touched_postings, rescore_candidates)
        if candidates is None:
            best = top_k_indices(scores, top_k)
        else:
            best = candidates[top_k_indices(scores[candidates], top_k)]
        ids = self._subset_ids(subset)
        view_ids = best.astype(np.int64) if ids is None else ids[best]
        return RetrievalResult(view_ids=view_ids, scores=scores[best], exact=candidates is None)

    def query_with(
        self, words: WordsByBag, config: QueryConfig, subset: np.ndarray | None = None
    ) -> RetrievalResult:
        """:meth:`query` with the settings of a :class:`QueryConfig`."""
        return self.query(
            words,
            config.top_k,
            config.weights,
            subset,
            config.max_touched_postings,
            config.rescore_candidates,
        )

    @staticmethod
    def _prune(
        columns: np.ndarray, values: np.ndarray, touched: np.ndarray, budget: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep the highest-weighted query words whose posting lists fit in ``budget`` entries."""
        order = np.lexsort((columns, -values))
        within = np.cumsum(touched[order]) <= budget
        within[0] = True  # the best word is always kept
        keep = np.sort(order[within])
        return columns[keep], values[keep]

    def _score_rows(self, ids: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Exact scores of the views ``ids`` from their count rows (touches only their entries).

        score_b(v) = sum_w tf(c_vw) idf_w q_w / norm_vb: the IDF goes into the query vector, so the
        rows are used as stored (one sparse product per bag).
        """
        rows = self.counts[ids]
        term = sp.csr_array((self._tf(rows.data), rows.indices, rows.indptr), shape=rows.shape)
        total = np.zeros(len(ids), dtype=np.float64)
        bag_of_column = self._bag_of_word[columns]
        for b in range(len(self.bag_sizes)):
            in_bag = bag_of_column == b
            if not np.any(in_bag):
                continue
            query = np.zeros(self.n_words, dtype=np.float32)
            query[columns[in_bag]] = values[in_bag] * self.idf[columns[in_bag]]
            norms = self.norms[ids, b]
            dots = term @ query
            total += np.divide(dots, norms, out=np.zeros(len(ids)), where=norms > 0)
        return total.astype(np.float32)

    def _subset_ids(self, subset: np.ndarray | None) -> np.ndarray | None:
        if subset is None:
            return None
        chosen = np.asarray(subset)
        if chosen.dtype == np.bool_:
            if chosen.shape != (self.n_views,):
                raise RetrievalIndexError(
                    f"subset: a boolean mask must have shape ({self.n_views},), got {chosen.shape}"
                )
            return np.flatnonzero(chosen)
        if chosen.ndim != 1 or (chosen.size and not np.issubdtype(chosen.dtype, np.integer)):
            raise RetrievalIndexError(
                f"subset: expected view ids (1-D int) or a mask, got {chosen.dtype}{chosen.shape}"
            )
        if chosen.size and (chosen.min() < 0 or chosen.max() >= self.n_views):
            raise RetrievalIndexError(
                f"subset: view ids must be in [0, {self.n_views}), got [{chosen.min()}, {chosen.max()}]"
            )
        return np.unique(chosen).astype(np.int64)

    def _require_views(self) -> None:
        if self.header_only:
            raise RetrievalIndexError(
                "query: this index was opened without its arrays (load_header); score views with "
                "weight_rows and dense_query"
            )
        if self.n_views == 0:
            raise RetrievalIndexError("query: the index holds no views yet (build it or add views first)")

    def view_matrix(self, weights: Mapping[str, float] | None = None) -> sp.csr_array:
        """Views x words CSR whose row dot products are the combined scores between views.

        Each bag's normalised block is scaled by sqrt(weight_b), so ``X @ X.T`` gives
        ``sum_b weight_b cos_b`` (used for co-similarity).
        """
        self._require_views()
        scale = np.sqrt(self._weights(weights))[self._bag_of_word]
        by_view = sp.csr_array(self.postings.T.tocsr(), dtype=np.float32)
        by_view.sort_indices()
        by_view.data = by_view.data * scale[by_view.indices]
        return by_view

    # ------------------------------------------------------------------------------ persistence

    _ARRAYS = (
        "counts.indptr",
        "counts.indices",
        "counts.data",
        "postings.indptr",
        "postings.indices",
        "postings.data",
        "df",
        "idf",
        "norms",
    )

    def parameters(self) -> dict[str, Any]:
        """What a map manifest records about this index."""
        return {
            "format": INDEX_FORMAT,
            "bags": dict(zip(self.bag_names, self.bag_sizes, strict=True)),
            "n_views": self.n_views,
            "idf_views": self.idf_views,
            "postings": int(self.counts.nnz),
            "config": self.config.model_dump(),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "counts.indptr": self.counts.indptr,
            "counts.indices": self.counts.indices,
            "counts.data": self.counts.data,
            "postings.indptr": self.postings.indptr,
            "postings.indices": self.postings.indices,
            "postings.data": self.postings.data,
            "df": self.df,
            "idf": self.idf,
            "norms": self.norms,
        }

    def write_into(self, directory: str | Path, name: str = "index") -> list[Path]:
        """Write ``{name}.json`` and ``{name}.<array>.npy`` files into an existing directory.

        Meant for a directory being built atomically (e.g. inside :func:`atomic_directory`).
        """
        folder = Path(directory)
        written = []
        for key, array in self.arrays().items():
            path = folder / f"{name}.{key}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            written.append(path)
        meta_path = folder / f"{name}.json"
        atomic_write_json(meta_path, self.parameters())
        written.append(meta_path)
        return written

    def save(self, directory: str | Path, name: str = "index", overwrite: bool = False) -> list[Path]:
        """Write the index into a new directory, atomically."""
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            written = self.write_into(tmp, name)
        return [Path(directory) / p.name for p in written]

    @classmethod
    def load_header(cls, directory: str | Path, name: str = "index") -> TfIdfIndex:
        """The index's settings, document frequencies and IDF only (kilobytes, whatever the number
        of views): enough for :meth:`dense_query` and :meth:`weight_rows` on rows read elsewhere
        (a tile-paged index); the count rows, posting lists and norms stay on disk."""
        folder = Path(directory)
        meta_path = folder / f"{name}.json"
        meta, bags, _n_views, idf_views = cls._read_meta(meta_path)
        config = validate_mapping(IndexConfig, meta.get("config"), f"{meta_path}: config")
        index = cls(bags, config)
        for key in ("df", "idf"):
            array = cls._read_array(folder / f"{name}.{key}.npy", mmap=False)
            if array.shape != (index.n_words,):
                raise RetrievalIndexError(
                    f"{folder / f'{name}.{key}.npy'}: shape {array.shape}, expected ({index.n_words},)"
                )
            setattr(index, key, array)
        index.idf_views = idf_views
        index.header_only = True
        return index

    @staticmethod
    def _read_meta(meta_path: Path) -> tuple[dict[str, Any], dict[str, int], int, int]:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RetrievalIndexError(f"{meta_path}: index file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RetrievalIndexError(f"{meta_path}: cannot read index metadata: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise RetrievalIndexError(f"{meta_path}: index format {found!r}, expected {INDEX_FORMAT}")
        try:
            bags = {str(k): int(v) for k, v in meta["bags"].items()}
            n_views, idf_views = int(meta["n_views"]), int(meta["idf_views"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RetrievalIndexError(f"{meta_path}: malformed index metadata ({exc!r})") from None
        return meta, bags, n_views, idf_views

    @staticmethod
    def _read_array(path: Path, mmap: bool) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise RetrievalIndexError(f"{path}: index file not found") from None
        except (OSError, ValueError) as exc:
            raise RetrievalIndexError(f"{path}: cannot read index array: {exc}") from None

    @classmethod
    def load(cls, directory: str | Path, name: str = "index", mmap: bool = True) -> TfIdfIndex:
        """Open an index written by :meth:`write_into`; arrays are memory-mapped unless ``mmap=False``."""
        folder = Path(directory)
        meta_path = folder / f"{name}.json"
        meta, bags, n_views, idf_views = cls._read_meta(meta_path)
        config = validate_mapping(IndexConfig, meta.get("config"), f"{meta_path}: config")
        index = cls(bags, config)
        arrays = {key: cls._read_array(folder / f"{name}.{key}.npy", mmap) for key in cls._ARRAYS}
        try:
            index.counts = sp.csr_array(
                (arrays["counts.data"], arrays["counts.indices"], arrays["counts.indptr"]),
                shape=(n_views, index.n_words),
            )
            index.postings = sp.csr_array(
                (arrays["postings.data"], arrays["postings.indices"], arrays["postings.indptr"]),
                shape=(index.n_words, n_views),
            )
        except ValueError as exc:
            raise RetrievalIndexError(f"{folder}: index arrays {name}.* are inconsistent: {exc}") from None
        expected = {"df": (index.n_words,), "idf": (index.n_words,), "norms": (n_views, len(bags))}
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                path = folder / f"{name}.{key}.npy"
                raise RetrievalIndexError(f"{path}: shape {arrays[key].shape}, expected {shape}")
        index.df, index.idf, index.norms = arrays["df"], arrays["idf"], arrays["norms"]
        index.idf_views = idf_views
        return index

    def __repr__(self) -> str:
        bags = ", ".join(f"{n}={s}" for n, s in zip(self.bag_names, self.bag_sizes, strict=True))
        return f"TfIdfIndex({self.n_views} views, bags: {bags}, {self.counts.nnz} postings)"
