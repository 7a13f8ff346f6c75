"""Co-similarity between reference views and topological re-ranking of retrieval candidates.

**Co-similarity** (the seed's "co-similarity between GIS images"): the combined BoVW score between
every pair of reference views, ``S = X X^T`` with ``X = TfIdfIndex.view_matrix(weights)``, keeping
the ``top_k`` most similar other views of each view. It is computed by blocks of rows: a block's
product with the inverted index is a (rows x views) matrix, so memory is bounded by
``chunk_rows x n_views`` whatever the map size. Time grows with ``n_views^2`` (every row is a
query against the whole index); blocks are independent (``row_range``) so a build can spread them
over processes or a Dask cluster and stack the results with :func:`scipy.sparse.vstack`. When a
topology is given, re-ranking only reads co-similarities of topological edges:
:func:`cosimilarity_on_edges` computes exactly those, in time linear in the number of edges.

**Topology**: an undirected graph between views (the map builder makes it from view poses: views
of the same or of adjacent panoramas), with the distance in metres on each edge (0 is allowed, e.g. two
yaws of one panorama, which is why it is not kept as a sparse matrix of distances).

**Re-ranking**: a retrieval candidate ``i`` with query score ``s_i`` gets

    r_i = s_i + beta * sum_{j in N(i)} g_ij * s_j,   g_ij = c_ij * exp(-d_ij / d0)

where ``N(i)`` are ``i``'s topological neighbours (every view whose co-similarity with ``i`` was
kept, when no topology is given), ``c_ij = max(S_ij, S_ji)`` the co-similarity (0 when neither
kept the other in its top-K), ``d_ij`` the edge's distance, ``d0 = distance_scale_m`` and
``beta = support_weight``; ``s_j`` are the query's scores of the neighbours (0 for views that were
not scored). A candidate gains when views near it on the ground that look like it also match the
query; an isolated false match gains nothing. ``g`` is precomputed once per map
(:func:`support_graph`), so re-ranking costs one sparse row-times-vector product per candidate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from geoloc_ros.bovw.errors import CosimilarityError
from geoloc_ros.bovw.index import RetrievalResult, TfIdfIndex, top_k_indices
from geoloc_ros.config import StrictModel
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)


class CosimilarityConfig(StrictModel):
    top_k: int = Field(20, ge=1, description="most similar other views kept per view")
    memory_budget_mb: float = Field(256.0, gt=0.0, description="working memory of one chunk of rows")
    include_self: bool = Field(False, description="keep each view's similarity with itself (always 1)")


class RerankConfig(StrictModel):
    support_weight: float = Field(1.0, ge=0.0, description="beta: weight of the neighbours' support")
    distance_scale_m: float = Field(10.0, gt=0.0, description="d0: distance at which support falls to 1/e")


def _rows_per_chunk(config: CosimilarityConfig, n_views: int) -> int:
    """Rows whose scores against every view fit in the memory budget: the sparse product (value
    and column index, ~12 bytes an entry at worst) plus its dense float32 copy."""
    return max(1, int(config.memory_budget_mb * 1e6 // (16 * max(n_views, 1))))


def _topk_rows(
    x: sp.csr_array, x_t: sp.csr_array, start: int, stop: int, config: CosimilarityConfig
) -> sp.csr_array:
    n = x.shape[0]
    chunk = _rows_per_chunk(config, n)
    k = min(config.top_k, n if config.include_self else n - 1)
    indptr = [0]
    indices: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for begin in range(start, stop, chunk):
        end = min(stop, begin + chunk)
        dense = (x[begin:end] @ x_t).toarray().astype(np.float32, copy=False)
        if not config.include_self:
            dense[np.arange(end - begin), np.arange(begin, end)] = -np.inf
        for row in dense:
            best = top_k_indices(row, k) if k > 0 else np.zeros(0, np.int64)
            best = best[row[best] > 0]  # views sharing no word are not similar
            indices.append(best.astype(np.int32))
            data.append(row[best])
            indptr.append(indptr[-1] + len(best))
    return sp.csr_array(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            np.asarray(indptr, dtype=np.int64),
        ),
        shape=(stop - start, n),
    )


def cosimilarity_block(
    index: TfIdfIndex,
    row_range: tuple[int, int],
    config: CosimilarityConfig | None = None,
    weights: dict[str, float] | None = None,
) -> sp.csr_array:
    """Top-K co-similarity of the views ``row_range = (start, stop)``: a (stop-start) x n_views CSR.

    Each row holds the ``top_k`` highest combined scores with other views (all > 0), best first,
    ties broken by the smaller view id. Blocks are independent: give each worker a large range.
    """
    cfg = config if config is not None else CosimilarityConfig()
    n = index.n_views
    start, stop = row_range
    if not 0 <= start <= stop <= n:
        raise CosimilarityError(f"cosimilarity_block: row_range {row_range} outside [0, {n}]")
    x = index.view_matrix(weights)
    return _topk_rows(x, sp.csr_array(x.T.tocsr()), start, stop, cfg)


def cosimilarity_topk(
    index: TfIdfIndex, config: CosimilarityConfig | None = None, weights: dict[str, float] | None = None
) -> sp.csr_array:
    """Top-K co-similarity of every view (n_views x n_views CSR), chunk by chunk with a progress bar."""
    cfg = config if config is not None else CosimilarityConfig()
    n = index.n_views
    x = index.view_matrix(weights)
    x_t = sp.csr_array(x.T.tocsr())
    chunk = _rows_per_chunk(cfg, n)
    blocks = [
        _topk_rows(x, x_t, b, min(n, b + chunk), cfg)
        for b in progress_bar(range(0, n, chunk), desc="co-similarity", unit="chunk")
    ]
    return sp.csr_array(sp.vstack(blocks, format="csr"))


@dataclass(frozen=True)
class Topology:
    """Undirected view graph in CSR layout: ``neighbours(i)`` with their distances in metres."""

    indptr: np.ndarray  # (n_views + 1,) int64
    indices: np.ndarray  # (n_edges,) int32, neighbour ids, sorted within a row
    distance_m: np.ndarray  # (n_edges,) float32

    @property
    def n_views(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_pairs(
        cls, n_views: int, first: np.ndarray, second: np.ndarray, distance_m: np.ndarray
    ) -> Topology:
        """Graph from edge lists (either direction; duplicates keep the smallest distance)."""
        i = np.asarray(first, dtype=np.int64)
        j = np.asarray(second, dtype=np.int64)
        d = np.asarray(distance_m, dtype=np.float64)
        if not (i.shape == j.shape == d.shape) or i.ndim != 1:
            raise CosimilarityError(
                f"Topology.from_pairs: first, second, distance_m must be 1-D of equal length, "
                f"got {i.shape}, {j.shape}, {d.shape}"
            )
        if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n_views):
            raise CosimilarityError(f"Topology.from_pairs: view ids must be in [0, {n_views})")
        if np.any(~np.isfinite(d)) or np.any(d < 0):
            raise CosimilarityError("Topology.from_pairs: distances must be finite and >= 0")
        keep = i != j
        rows = np.concatenate([i[keep], j[keep]])
        cols = np.concatenate([j[keep], i[keep]])
        dist = np.concatenate([d[keep], d[keep]])
        order = np.lexsort((dist, cols, rows))
        rows, cols, dist = rows[order], cols[order], dist[order]
        first_of_pair = np.ones(len(rows), dtype=bool)
        first_of_pair[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        rows, cols, dist = rows[first_of_pair], cols[first_of_pair], dist[first_of_pair]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_views))]).astype(np.int64)
        return cls(indptr=indptr, indices=cols.astype(np.int32), distance_m=dist.astype(np.float32))

    def neighbours(self, view: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[view], self.indptr[view + 1]
        return self.indices[lo:hi], self.distance_m[lo:hi]

    def proximity(self, distance_scale_m: float) -> sp.csr_array:
        """exp(-d / d0) on every edge (> 0 even at d = 0, so no edge is lost as an explicit zero)."""
        weights = np.exp(-self.distance_m.astype(np.float64) / distance_scale_m).astype(np.float32)
        # Copies: scipy adopts index arrays and some of its operations modify them in place.
        return sp.csr_array(
            (weights, self.indices.copy(), self.indptr.copy()), shape=(self.n_views, self.n_views)
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "indices": self.indices, "distance_m": self.distance_m}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> Topology:
        try:
            topology = cls(
                indptr=np.asarray(arrays["indptr"], dtype=np.int64),
                indices=np.asarray(arrays["indices"], dtype=np.int32),
                distance_m=np.asarray(arrays["distance_m"], dtype=np.float32),
            )
        except KeyError as exc:
            raise CosimilarityError(f"Topology.from_arrays: missing array {exc.args[0]!r}") from None
        n_edges = len(topology.indices)
        if topology.indptr[-1] != n_edges or len(topology.distance_m) != n_edges:
            raise CosimilarityError("Topology.from_arrays: indptr, indices and distance_m disagree in length")
        return topology


def cosimilarity_on_edges(
    index: TfIdfIndex,
    topology: Topology,
    weights: dict[str, float] | None = None,
    memory_budget_mb: float = CosimilarityConfig().memory_budget_mb,
) -> sp.csr_array:
    """Exact co-similarity of every topological edge (views x views CSR on the topology's pattern).

    All :func:`support_graph` needs when a topology is given, at a cost linear in the number of
    edges (views are taken by blocks; a block is scored against the union of its neighbours), so
    it stays cheap for maps far too large for the all-pairs :func:`cosimilarity_topk`. Fastest
    when view ids follow the street (neighbours of a block then overlap). Pairs that share no
    word are left out.
    """
    n = index.n_views
    if topology.n_views != n:
        raise CosimilarityError(f"cosimilarity_on_edges: topology has {topology.n_views} views, index {n}")
    x = index.view_matrix(weights)
    similarity = np.zeros(len(topology.indices), dtype=np.float32)
    degree = np.diff(topology.indptr)
    start = 0
    with progress_bar(total=n, desc="co-similarity on edges", unit="view") as progress:
        while start < n:
            # Grow the block while its dense (block x neighbours) scores fit in the budget.
            stop = start + 1
            while stop < n and (stop + 1 - start) * (
                topology.indptr[stop + 1] - topology.indptr[start]
            ) * 16 <= (memory_budget_mb * 1e6):
                stop += 1
            lo, hi = topology.indptr[start], topology.indptr[stop]
            if hi > lo:
                neighbours, column = np.unique(topology.indices[lo:hi], return_inverse=True)
                block = (x[start:stop] @ x[neighbours].T).toarray()
                row = np.repeat(np.arange(stop - start), degree[start:stop])
                similarity[lo:hi] = block[row, column]
            progress.update(stop - start)
            start = stop
    # Copies: scipy adopts the index arrays and eliminate_zeros compacts them in place.
    graph = sp.csr_array((similarity, topology.indices.copy(), topology.indptr.copy()), shape=(n, n))
    graph.eliminate_zeros()
    return graph


def support_graph(
    cosimilarity: sp.sparray | sp.spmatrix,
    topology: Topology | None = None,
    distance_scale_m: float = RerankConfig().distance_scale_m,
) -> sp.csr_array:
    """The re-ranking weights ``g_ij`` (see the module docstring), a views x views CSR."""
    s = sp.csr_array(cosimilarity, dtype=np.float32)
    if s.shape[0] != s.shape[1]:
        raise CosimilarityError(f"support_graph: co-similarity must be square, got {s.shape}")
    both = s.maximum(s.T).tocoo()
    off_diagonal = both.row != both.col
    symmetric = sp.csr_array(
        (both.data[off_diagonal], (both.row[off_diagonal], both.col[off_diagonal])), shape=s.shape
    )
    if topology is None:
        return symmetric
    if topology.n_views != s.shape[0]:
        raise CosimilarityError(
            f"support_graph: topology has {topology.n_views} views, co-similarity {s.shape[0]}"
        )
    graph = sp.csr_array(symmetric.multiply(topology.proximity(distance_scale_m)).tocsr())
    graph.eliminate_zeros()
    return graph


def rerank(
    candidates: np.ndarray,
    view_scores: np.ndarray,
    support: sp.csr_array,
    support_weight: float = RerankConfig().support_weight,
) -> RetrievalResult:
    """Candidates re-ordered by ``r_i = s_i + beta * sum_j g_ij s_j`` (best first).

    ``view_scores`` is the query's score of every view (n_views,), e.g. :meth:`TfIdfIndex.scores`
    without subset; views not scored hold 0. Ties keep the smaller view id first.
    """
    ids = np.asarray(candidates, dtype=np.int64)
    scores = np.asarray(view_scores, dtype=np.float32)
    n = support.shape[0]
    if scores.shape != (n,):
        raise CosimilarityError(f"rerank: view_scores must have shape ({n},), got {scores.shape}")
    if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= n)):
        raise CosimilarityError(f"rerank: candidates must be 1-D view ids in [0, {n})")
    if support_weight < 0:
        raise CosimilarityError(f"rerank: support_weight must be >= 0, got {support_weight}")
    boosted = scores[ids] + np.float32(support_weight) * (support[ids] @ scores).astype(np.float32)
    order = np.lexsort((ids, -boosted))
    return RetrievalResult(view_ids=ids[order], scores=boosted[order])


def cosimilarity_to_arrays(matrix: sp.sparray | sp.spmatrix) -> dict[str, np.ndarray]:
    """``indptr``, ``indices``, ``data`` and ``shape`` arrays of a co-similarity CSR, for storage."""
    csr = sp.csr_array(matrix)
    return {
        "indptr": csr.indptr,
        "indices": csr.indices,
        "data": csr.data.astype(np.float32, copy=False),
        "shape": np.asarray(csr.shape, dtype=np.int64),
    }


def cosimilarity_from_arrays(arrays: dict[str, Any]) -> sp.csr_array:
    """Inverse of :func:`cosimilarity_to_arrays` (arrays may be memory-mapped; they are not copied)."""
    try:
        shape = tuple(int(v) for v in np.asarray(arrays["shape"]).reshape(2))
        return sp.csr_array((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    except KeyError as exc:
        raise CosimilarityError(f"co-similarity arrays: missing {exc.args[0]!r}") from None
    except ValueError as exc:
        raise CosimilarityError(f"co-similarity arrays are inconsistent: {exc}") from None
