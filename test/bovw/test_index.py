import json

import numpy as np
import pytest

from geoloc_ros.bovw.errors import RetrievalIndexError
from geoloc_ros.bovw.index import IndexConfig, QueryConfig, TfIdfIndex, top_k_indices

BAGS = {"sift": 50, "mser": 20}


def random_views(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "sift": rng.integers(0, BAGS["sift"], rng.integers(5, 40)),
            "mser": rng.integers(0, BAGS["mser"], rng.integers(0, 10)),
        }
        for _ in range(n)
    ]


def backed_by_memmap(array: np.ndarray) -> bool:
    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


def dense_tfidf(words: list[dict[str, np.ndarray]], idf_from: list[dict[str, np.ndarray]], tf: str):
    """Independent dense TF-IDF: rows per view, one L2-normalised block per bag."""

    def counts_of(items):
        out = {}
        for bag, size in BAGS.items():
            out[bag] = np.stack(
                [np.bincount(w.get(bag, np.zeros(0, int)), minlength=size) for w in items]
            ).astype(float)
        return out

    reference = counts_of(idf_from)
    counts = counts_of(words)
    blocks = {}
    for bag in BAGS:
        df = (reference[bag] > 0).sum(axis=0)
        idf = np.log((len(idf_from) + 1.0) / (df + 1.0))
        term = np.sqrt(counts[bag]) if tf == "sqrt" else counts[bag]
        weighted = term * idf
        norm = np.linalg.norm(weighted, axis=1, keepdims=True)
        blocks[bag] = np.divide(weighted, norm, out=np.zeros_like(weighted), where=norm > 0)
    return blocks


def dense_scores(views, query, weights, tf="raw", idf_from=None):
    v = dense_tfidf(views, idf_from or views, tf)
    q = dense_tfidf([query], idf_from or views, tf)
    return sum(weights.get(bag, 0.0) * v[bag] @ q[bag][0] for bag in BAGS)


@pytest.mark.parametrize("tf", ["raw", "sqrt"])
def test_scores_equal_a_dense_cosine_computation(tf):
    views = random_views(60, seed=1)
    index = TfIdfIndex.build(BAGS, views, IndexConfig(tf_transform=tf))
    weights = {"sift": 0.7, "mser": 0.3}
    for query in random_views(5, seed=2) + views[:2]:
        scores, exact = index.scores(query, weights)
        assert exact
        np.testing.assert_allclose(scores, dense_scores(views, query, weights, tf), atol=1e-6)


def test_a_view_retrieves_itself_first_and_weights_select_bags():
    views = random_views(80, seed=3)
    index = TfIdfIndex.build(BAGS, views)
    for i in (0, 17, 42):
        result = index.query(views[i], top_k=5)
        assert result.view_ids[0] == i
        assert np.all(np.diff(result.scores) <= 0)
    sift_only, _ = index.scores(views[5], {"sift": 1.0})
    np.testing.assert_allclose(sift_only, dense_scores(views, views[5], {"sift": 1.0}), atol=1e-6)


def test_top_k_with_subset_ids_and_masks_matches_full_scores():
    views = random_views(100, seed=4)
    index = TfIdfIndex.build(BAGS, views)
    query = random_views(1, seed=5)[0]
    full, _ = index.scores(query)
    subset = np.array([90, 3, 57, 12, 3, 64, 8])
    result = index.query(query, top_k=3, subset=subset)
    members = np.unique(subset)
    expected = members[np.lexsort((members, -full[members]))][:3]
    np.testing.assert_array_equal(result.view_ids, expected)
    np.testing.assert_allclose(result.scores, full[expected], atol=1e-6)
    mask = np.zeros(100, bool)
    mask[members] = True
    np.testing.assert_array_equal(index.query(query, top_k=3, subset=mask).view_ids, expected)
    # A subset larger than the query's postings goes through the inverted lists: same answer.
    big = np.arange(100)
    np.testing.assert_array_equal(
        index.query(query, top_k=10, subset=big).view_ids, index.query(query, 10).view_ids
    )
    assert len(index.query(query, top_k=10, subset=np.array([4, 5])).view_ids) == 2


def test_top_k_breaks_ties_by_smaller_id():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    np.testing.assert_array_equal(top_k_indices(scores, 3), [1, 3, 0])
    np.testing.assert_array_equal(top_k_indices(scores, 4), [1, 3, 0, 2])
    np.testing.assert_array_equal(top_k_indices(scores, 10), [1, 3, 0, 2, 5, 4])


def test_incremental_add_keeps_idf_and_refresh_equals_a_rebuild():
    first, later = random_views(40, seed=6), random_views(25, seed=7)
    index = TfIdfIndex.build(BAGS, first)
    query = random_views(1, seed=8)[0]
    before, _ = index.scores(query)
    idf_before = index.idf.copy()
    new_ids = index.add_views(later)
    np.testing.assert_array_equal(new_ids, np.arange(40, 65))
    np.testing.assert_array_equal(index.idf, idf_before)
    assert index.idf_views == 40 and index.n_views == 65
    after, _ = index.scores(query)
    np.testing.assert_allclose(after[:40], before, atol=1e-7)  # existing views keep their scores
    # New views are weighted with the kept IDF.
    np.testing.assert_allclose(
        after, dense_scores(first + later, query, {"sift": 0.7, "mser": 0.3}, idf_from=first), atol=1e-6
    )
    index.refresh_idf()
    rebuilt = TfIdfIndex.build(BAGS, first + later)
    np.testing.assert_allclose(index.scores(query)[0], rebuilt.scores(query)[0], atol=1e-7)
    np.testing.assert_array_equal(index.df, rebuilt.df)


def test_postings_cap_prunes_low_weight_words_and_keeps_the_match():
    rng = np.random.default_rng(9)
    bags = {"sift": 2000}
    # Frequent words 0-4 in most views (long lists, low IDF) plus rare distinctive words.
    views = [
        {"sift": np.concatenate([np.flatnonzero(rng.random(5) < 0.8), rng.integers(5, 2000, 10)])}
        for _ in range(200)
    ]
    index = TfIdfIndex.build(bags, views)
    query = views[123]
    exact = index.query(query, top_k=5, weights={"sift": 1.0})
    capped = index.query(query, top_k=5, weights={"sift": 1.0}, max_touched_postings=100)
    assert exact.exact and not capped.exact
    assert capped.view_ids[0] == 123 == exact.view_ids[0]
    config = QueryConfig(top_k=2, weights={"sift": 1.0}, max_touched_postings=None)
    assert index.query_with(query, config).exact


def test_capped_queries_rescore_their_candidates_exactly():
    views = random_views(300, seed=16)
    index = TfIdfIndex.build(BAGS, views)
    query = random_views(1, seed=17)[0]
    exact, _ = index.scores(query)
    approx, is_exact = index.scores(query, max_touched_postings=300, rescore_candidates=20)
    assert not is_exact
    assert np.all(approx <= exact + 1e-6)  # pruned scores are lower bounds
    # The 20 candidates are the best 20 returned, with their exact scores, above all the others.
    order = np.argsort(-approx, kind="stable")
    candidates, others = order[:20], order[20:]
    np.testing.assert_allclose(approx[candidates], exact[candidates], atol=1e-6)
    assert approx[candidates].min() >= approx[others].max()
    assert not np.allclose(approx[others], exact[others], atol=1e-6)
    # With every view rescored, the capped answer is the exact one.
    full = index.query(query, top_k=5, max_touched_postings=300, rescore_candidates=300)
    np.testing.assert_array_equal(full.view_ids, index.query(query, top_k=5).view_ids)
    with pytest.raises(RetrievalIndexError, match="rescore_candidates"):
        index.query(query, top_k=5, rescore_candidates=3)


def test_save_and_memory_mapped_load_round_trip(tmp_path):
    views = random_views(50, seed=10)
    index = TfIdfIndex.build(BAGS, views, IndexConfig(tf_transform="sqrt"))
    index.save(tmp_path / "idx")
    loaded = TfIdfIndex.load(tmp_path / "idx")
    for array in (loaded.postings.data, loaded.postings.indices, loaded.counts.data, loaded.idf):
        assert backed_by_memmap(array)
    assert loaded.n_views == 50 and loaded.config == index.config and loaded.bag_sizes == index.bag_sizes
    for query in random_views(3, seed=11):
        np.testing.assert_array_equal(loaded.scores(query)[0], index.scores(query)[0])
    # A loaded (read-only) index still accepts new views.
    loaded.add_views(random_views(2, seed=12))
    assert loaded.n_views == 52
    in_memory = TfIdfIndex.load(tmp_path / "idx", mmap=False)
    assert not backed_by_memmap(in_memory.postings.data)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(RetrievalIndexError, match=r"index\.json: index file not found"):
        TfIdfIndex.load(tmp_path)
    TfIdfIndex.build(BAGS, random_views(5, seed=13)).save(tmp_path / "i")
    meta_path = tmp_path / "i" / "index.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": 0}))
    with pytest.raises(RetrievalIndexError, match="format 0"):
        TfIdfIndex.load(tmp_path / "i")
    meta_path.write_text(json.dumps(meta))
    np.save(tmp_path / "i" / "index.norms.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(RetrievalIndexError, match=r"index\.norms\.npy: shape"):
        TfIdfIndex.load(tmp_path / "i")
    (tmp_path / "i" / "index.df.npy").unlink()
    with pytest.raises(RetrievalIndexError, match=r"index\.df\.npy: index file not found"):
        TfIdfIndex.load(tmp_path / "i")


def test_bad_queries_raise_clear_errors():
    empty = TfIdfIndex(BAGS)
    with pytest.raises(RetrievalIndexError, match="no views yet"):
        empty.query({"sift": np.array([1, 2])})
    index = TfIdfIndex.build(BAGS, random_views(10, seed=14))
    with pytest.raises(RetrievalIndexError, match=r"word ids must be in \[0, 50\)"):
        index.query({"sift": np.array([1, 50])})
    with pytest.raises(RetrievalIndexError, match="unknown bag"):
        index.query({"orb": np.array([1])})
    with pytest.raises(RetrievalIndexError, match="integer"):
        index.query({"sift": np.array([1.5])})
    with pytest.raises(RetrievalIndexError, match="mask must have shape"):
        index.query({"sift": np.array([1])}, subset=np.ones(3, bool))
    with pytest.raises(RetrievalIndexError, match=r"view ids must be in \[0, 10\)"):
        index.query({"sift": np.array([1])}, subset=np.array([11]))
    with pytest.raises(RetrievalIndexError, match="top_k"):
        index.query({"sift": np.array([1])}, top_k=0)
    with pytest.raises(RetrievalIndexError, match="unknown bag"):
        index.query({"sift": np.array([1])}, weights={"orb": 1.0})
    with pytest.raises(RetrievalIndexError, match="view 10"):
        index.add_views([{"sift": np.array([-1])}])
    with pytest.raises(ValueError, match="weights"):
        QueryConfig(weights={"sift": -1.0})
    with pytest.raises(ValueError, match="rescore_candidates"):
        QueryConfig(top_k=50, rescore_candidates=20)


def test_a_query_without_known_words_scores_zero():
    index = TfIdfIndex.build(BAGS, random_views(10, seed=15))
    scores, _ = index.scores({"sift": np.zeros(0, int)})
    assert scores.shape == (10,) and not scores.any()
