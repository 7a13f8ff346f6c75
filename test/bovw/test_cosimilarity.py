import numpy as np
import pytest
import scipy.sparse as sp

from geoloc_ros.bovw.cosimilarity import (
    CosimilarityConfig,
    Topology,
    cosimilarity_block,
    cosimilarity_from_arrays,
    cosimilarity_on_edges,
    cosimilarity_to_arrays,
    cosimilarity_topk,
    rerank,
    support_graph,
)
from geoloc_ros.bovw.errors import CosimilarityError
from geoloc_ros.bovw.index import TfIdfIndex

BAGS = {"sift": 60, "mser": 15}


def random_index(n: int, seed: int) -> TfIdfIndex:
    rng = np.random.default_rng(seed)
    views = [
        {"sift": rng.integers(0, 60, rng.integers(5, 30)), "mser": rng.integers(0, 15, rng.integers(1, 6))}
        for _ in range(n)
    ]
    return TfIdfIndex.build(BAGS, views)


def dense_cosimilarity(index: TfIdfIndex, weights=None) -> np.ndarray:
    """Every pair's combined score, from the index's own query path (independent of the product)."""
    rows = []
    for v in range(index.n_views):
        counts = index.counts[[v]]
        words = {}
        for b, name in enumerate(index.bag_names):
            lo, hi = index.offsets[b], index.offsets[b + 1]
            in_bag = (counts.indices >= lo) & (counts.indices < hi)
            words[name] = np.repeat(counts.indices[in_bag] - lo, counts.data[in_bag].astype(int))
        rows.append(index.scores(words, weights)[0])
    return np.array(rows)


def test_top_k_cosimilarity_equals_dense_computation():
    index = random_index(40, seed=0)
    dense = dense_cosimilarity(index)
    np.testing.assert_allclose(np.diag(dense), 1.0, atol=1e-5)
    top = cosimilarity_topk(index, CosimilarityConfig(top_k=5, memory_budget_mb=0.0005))  # several chunks
    assert top.shape == (40, 40)
    for v in range(40):
        row = top[[v]]
        others = dense[v].copy()
        others[v] = -np.inf
        expected = np.sort(others)[::-1][:5]
        order = np.argsort(-row.data)
        np.testing.assert_allclose(row.data[order], expected, atol=1e-5)
        np.testing.assert_allclose(dense[v, row.indices], row.data, atol=1e-5)
        assert v not in row.indices


def test_blocks_stack_to_the_full_matrix_and_self_can_be_kept():
    index = random_index(30, seed=1)
    config = CosimilarityConfig(top_k=4)
    full = cosimilarity_topk(index, config)
    stacked = sp.vstack(
        [cosimilarity_block(index, (0, 13), config), cosimilarity_block(index, (13, 30), config)]
    )
    assert (abs(full - stacked)).max() < 1e-7
    with_self = cosimilarity_topk(index, CosimilarityConfig(top_k=1, include_self=True))
    np.testing.assert_array_equal(with_self.indices, np.arange(30))
    with pytest.raises(CosimilarityError, match="row_range"):
        cosimilarity_block(index, (20, 40))


def test_cosimilarity_with_weights_matches_dense():
    index = random_index(20, seed=2)
    weights = {"sift": 1.0}
    dense = dense_cosimilarity(index, weights)
    top = cosimilarity_topk(index, CosimilarityConfig(top_k=19), weights)
    np.fill_diagonal(dense, 0.0)
    np.testing.assert_allclose(top.toarray(), np.where(dense > 0, dense, 0.0), atol=1e-5)


def test_topology_from_pairs_is_symmetric_deduplicated_and_keeps_zero_distances():
    topology = Topology.from_pairs(
        4, np.array([0, 1, 0, 2, 3]), np.array([1, 0, 2, 2, 1]), np.array([5.0, 3.0, 0.0, 1.0, 7.0])
    )
    ids, dist = topology.neighbours(0)
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_allclose(dist, [3.0, 0.0])  # the shorter of the duplicated edge
    ids, dist = topology.neighbours(1)
    np.testing.assert_array_equal(ids, [0, 3])
    assert len(topology.neighbours(2)[0]) == 1  # the self-loop 2-2 is dropped
    proximity = topology.proximity(10.0)
    assert proximity[0, 2] == pytest.approx(1.0)  # zero distance is a real edge, not a lost zero
    restored = Topology.from_arrays(topology.to_arrays())
    np.testing.assert_array_equal(restored.indices, topology.indices)
    with pytest.raises(CosimilarityError, match="view ids"):
        Topology.from_pairs(2, np.array([0]), np.array([2]), np.array([1.0]))
    with pytest.raises(CosimilarityError, match="distances"):
        Topology.from_pairs(2, np.array([0]), np.array([1]), np.array([-1.0]))


def test_rerank_follows_the_documented_formula_and_promotes_supported_candidates():
    # Views 0-2 are one place (neighbours, alike); view 3 is an isolated look-alike elsewhere.
    n = 5
    cos = sp.csr_array(
        (np.array([0.6, 0.6, 0.5, 0.5, 0.4]), (np.array([0, 1, 1, 2, 3]), np.array([1, 0, 2, 1, 4]))),
        shape=(n, n),
    )
    topology = Topology.from_pairs(n, np.array([0, 1, 3]), np.array([1, 2, 0]), np.array([0.0, 8.0, 40.0]))
    support = support_graph(cos, topology, distance_scale_m=10.0)
    # 0-1 and 1-2 are similar and adjacent; 3-4 similar, not adjacent; 3-0 adjacent, not similar.
    assert support.nnz == 4
    assert support[0, 1] == pytest.approx(0.6)
    assert support[1, 2] == pytest.approx(0.5 * np.exp(-0.8))
    scores = np.array([0.30, 0.25, 0.20, 0.33, 0.0], dtype=np.float32)
    result = rerank(np.array([3, 0, 1]), scores, support, support_weight=1.0)
    expected = {
        0: 0.30 + 0.6 * 0.25,
        1: 0.25 + 0.6 * 0.30 + 0.5 * np.exp(-0.8) * 0.20,
        3: 0.33,
    }
    assert result.view_ids.tolist() == [1, 0, 3]
    np.testing.assert_allclose(result.scores, [expected[1], expected[0], expected[3]], rtol=1e-6)
    # Without support the order is the raw scores'.
    assert rerank(np.array([3, 0, 1]), scores, support, support_weight=0.0).view_ids.tolist() == [3, 0, 1]
    # Without topology, co-similar views support each other wherever they are.
    assert support_graph(cos)[3, 4] == pytest.approx(0.4)


def test_rerank_validates_inputs():
    support = sp.csr_array((3, 3), dtype=np.float32)
    with pytest.raises(CosimilarityError, match="view_scores"):
        rerank(np.array([0]), np.zeros(4), support)
    with pytest.raises(CosimilarityError, match="candidates"):
        rerank(np.array([5]), np.zeros(3), support)
    with pytest.raises(CosimilarityError, match="square"):
        support_graph(sp.csr_array((2, 3)))
    with pytest.raises(CosimilarityError, match="topology has 2 views"):
        support_graph(
            sp.csr_array((3, 3)), Topology.from_pairs(2, np.array([0]), np.array([1]), np.array([1.0]))
        )


def test_cosimilarity_arrays_round_trip_through_memory_mapped_files(tmp_path):
    top = cosimilarity_topk(random_index(15, seed=3), CosimilarityConfig(top_k=3))
    for name, array in cosimilarity_to_arrays(top).items():
        np.save(tmp_path / f"{name}.npy", array)
    loaded = cosimilarity_from_arrays(
        {
            name: np.load(tmp_path / f"{name}.npy", mmap_mode="r")
            for name in ("indptr", "indices", "data", "shape")
        }
    )
    assert loaded.shape == top.shape and abs(loaded - top).max() == 0
    with pytest.raises(CosimilarityError, match="missing 'data'"):
        cosimilarity_from_arrays({"indptr": top.indptr, "indices": top.indices, "shape": np.array([15, 15])})


def test_cosimilarity_on_edges_equals_dense_on_the_topology():
    index = random_index(50, seed=4)
    rng = np.random.default_rng(5)
    first = rng.integers(0, 50, 120)
    topology = Topology.from_pairs(50, first, (first + rng.integers(1, 6, 120)) % 50, rng.uniform(0, 30, 120))
    dense = dense_cosimilarity(index)
    # A tiny budget forces one view per block; the default takes all views at once.
    for budget in (1e-6, 256.0):
        on_edges = cosimilarity_on_edges(index, topology, memory_budget_mb=budget)
        for v in range(50):
            ids, _ = topology.neighbours(v)
            row = on_edges[[v]]
            np.testing.assert_array_equal(row.indices, ids[dense[v, ids] > 0])
            np.testing.assert_allclose(row.data, dense[v, row.indices], atol=1e-5)
    # Re-ranking support from exact edge co-similarities.
    support = support_graph(on_edges, topology, distance_scale_m=10.0)
    assert support.nnz == on_edges.nnz
    with pytest.raises(CosimilarityError, match="topology has 3 views"):
        cosimilarity_on_edges(index, Topology.from_pairs(3, np.array([0]), np.array([1]), np.array([1.0])))
