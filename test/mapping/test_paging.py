import threading

import numpy as np
import pytest

from geoloc_ros.bovw.index import IndexConfig, QueryConfig, TfIdfIndex
from geoloc_ros.mapping.errors import BundleFormatError
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.paging import FeatureColumns, NpyRows, TilePagedIndex, tiles_ahead
from geoloc_ros.mapping.tiles import TileTable, tile_sort_order

BAGS = {"sift": 300, "mser": 80}
TILE_M = 100.0


def random_words(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"sift": rng.integers(0, 300, 60), "mser": rng.integers(0, 80, 15)}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """480 views on a 6 x 4 grid of 100 m tiles, sorted by tile, with their index on disk."""
    rng = np.random.default_rng(0)
    xy = rng.uniform([0.0, 0.0], [600.0, 400.0], size=(480, 2))
    order = tile_sort_order(xy, TILE_M)
    positions = np.column_stack([xy[order], np.zeros(480)])
    views = [random_words(rng) for _ in range(480)]
    index = TfIdfIndex.build(BAGS, views, IndexConfig(tf_transform="sqrt"))
    folder = tmp_path_factory.mktemp("paged")
    index.write_into(folder, "index")
    np.save(folder / "position.npy", positions)
    tiles = TileTable.from_sorted_positions(positions, TILE_M)
    return folder, tiles, positions, index, views


def paged(synthetic, max_tiles=8) -> TilePagedIndex:
    folder, tiles, _, _, _ = synthetic
    return TilePagedIndex(folder, "index", tiles, folder / "position.npy", max_tiles=max_tiles)


def test_scores_of_a_subset_are_the_whole_index_scores(synthetic):
    _, _, positions, index, views = synthetic
    pager = paged(synthetic)
    query = views[17]
    subset = np.flatnonzero(np.hypot(*(positions[:, :2] - [250.0, 180.0]).T) < 120.0)
    expected, _ = index.scores(query, {"sift": 0.6, "mser": 0.4}, subset)
    got, exact = pager.scores(query, {"sift": 0.6, "mser": 0.4}, subset)
    assert exact and np.allclose(got, expected, atol=1e-6)
    ids, near = pager.scores_near(query, [250.0, 180.0], 120.0, {"sift": 0.6, "mser": 0.4})
    assert np.array_equal(ids, subset) and np.allclose(near, expected, atol=1e-6)
    config = QueryConfig(top_k=5)
    assert np.array_equal(
        pager.query_with(query, config, subset).view_ids, index.query_with(query, config, subset).view_ids
    )
    # Without a prior, the whole index answers.
    assert np.allclose(pager.scores(query)[0], index.scores(query)[0])


def test_a_query_reads_only_the_tiles_near_its_prior(synthetic):
    _, tiles, _, _, views = synthetic
    pager = paged(synthetic)
    prior, radius = np.array([150.0, 150.0]), 40.0
    pager.scores_near(views[0], prior, radius)
    near = sorted(int(t) for t in tiles.tiles_within(prior, radius))
    assert sorted(pager.stats.loaded) == near == [tiles.find((1, 1))]
    assert pager.stats.bytes_read > 0
    # Near a tile corner: the four tiles around it, nothing else; again: no new read.
    pager.scores_near(views[0], [300.0, 200.0], 30.0)
    corner = {tiles.find(k) for k in [(2, 1), (3, 1), (2, 2), (3, 2)]}
    assert set(pager.stats.loaded[1:]) == corner and len(pager.stats.loaded) == 5
    before = pager.stats.bytes_read
    pager.scores_near(views[0], [300.0, 200.0], 30.0)
    assert len(pager.stats.loaded) == 5 and pager.stats.bytes_read == before and pager.stats.hits >= 4


def test_prefetch_loads_the_tiles_ahead_and_memory_stays_bounded(synthetic):
    _, tiles, _, _, views = synthetic
    pager = paged(synthetic, max_tiles=3)
    # Driving east at 10 m/s from (50, 50): the tile 100 m ahead is loaded before it is needed.
    loaded = pager.prefetch([50.0, 50.0], 20.0, velocity_xy=[10.0, 0.0], lookahead_s=10.0)
    assert [tuple(tiles.keys[t]) for t in loaded] == [(0, 0), (1, 0)]
    assert pager.resident_tiles[-1] == tiles.find((0, 0))  # the nearest is the most recent
    count = len(pager.stats.loaded)
    pager.scores_near(views[0], [150.0, 50.0], 20.0)
    assert len(pager.stats.loaded) == count  # already resident
    # A drive across the map never holds more than max_tiles tiles.
    for x in np.arange(50.0, 600.0, 25.0):
        pager.prefetch([x, 250.0], 20.0, velocity_xy=[10.0, 0.0], lookahead_s=5.0)
        assert len(pager.resident_tiles) <= 3
    assert pager.stats.evicted >= len(pager.stats.loaded) - 3


def test_npy_rows_reads_ranges_and_names_bad_files(tmp_path):
    array = np.arange(60, dtype=np.int32).reshape(20, 3)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    assert np.array_equal(rows.read(4, 9), array[4:9]) and rows.read(5, 5).shape == (0, 3)
    with pytest.raises(IndexError):
        rows.read(18, 21)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(BundleFormatError, match=r"bad\.npy"):
        NpyRows(tmp_path / "bad.npy")
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-8])
    with pytest.raises(BundleFormatError, match="truncated"):
        NpyRows(tmp_path / "short.npy")


def test_bundle_paged_retriever_matches_the_whole_index(tiny_map_dir):
    bundle = MapBundle.open(tiny_map_dir, verify="none")
    features, _ = bundle.features(4)
    centre = bundle.views.position[4, :2]
    subset = bundle.views_near(centre, 60.0)
    whole = bundle.retriever().retrieve(features, subset)
    retriever = bundle.retriever(paged_tiles=4)
    paged_result = retriever.retrieve(features, subset)
    assert np.array_equal(whole.view_ids, paged_result.view_ids)
    assert np.allclose(whole.scores, paged_result.scores, atol=1e-6)
    pager = retriever.index
    assert isinstance(pager, TilePagedIndex)
    assert sorted(pager.stats.loaded) == sorted({int(t) for t in bundle.views.tile[subset]})


def test_feature_columns_read_only_the_tiles_near_the_prior(synthetic, tmp_path):
    """Per-view feature reads (what the localizer's candidates cost) touch the tiles of those
    views only, counted; prefetch asks the kernel for the tiles ahead without reading them."""
    _, tiles, positions, _, _ = synthetic
    rng = np.random.default_rng(3)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(5, 40, len(positions)))]).astype(np.int64)
    points = rng.normal(size=(int(offsets[-1]), 3)).astype(np.float32)
    kinds = rng.integers(0, 2, int(offsets[-1])).astype(np.uint8)
    np.save(tmp_path / "points_map.npy", points)
    np.save(tmp_path / "kind.npy", kinds)
    files = {"points_map": tmp_path / "points_map.npy", "kind": tmp_path / "kind.npy"}
    columns = FeatureColumns(files, offsets[tiles.starts])
    prior, radius = np.array([250.0, 150.0]), 40.0
    near = np.flatnonzero(np.hypot(*(positions[:, :2] - prior).T) <= radius)
    for view in near:
        got = columns.read("points_map", int(offsets[view]), int(offsets[view + 1]))
        assert np.array_equal(got, points[offsets[view] : offsets[view + 1]])
        assert not isinstance(got, np.memmap) and got.flags.writeable  # the caller's own array
    assert columns.stats.reads == len(near) > 0
    assert columns.stats.bytes_read == int(np.sum(np.diff(offsets)[near])) * 12
    tile_of_view = tiles.row_tiles()
    assert set(columns.stats.tiles) == {int(tile_of_view[v]) for v in near}
    assert set(columns.stats.tiles) <= {int(t) for t in tiles.tiles_within(prior, radius)}
    assert sum(columns.stats.tiles.values()) == len(near)
    # Prefetch of the tiles ahead: recorded, nothing read on the caller's thread.
    ahead = tiles_ahead(tiles, prior, radius, velocity_xy=[10.0, 0.0], lookahead_s=10.0)
    assert {tuple(tiles.keys[t]) for t in ahead} >= {(2, 1), (3, 1)}
    columns.prefetch(ahead)
    assert columns.stats.prefetched == ahead and columns.stats.reads == len(near)
    columns.close()


def test_paged_index_is_prefetched_from_another_thread_while_scoring(synthetic):
    views = synthetic[4]
    pager = paged(synthetic, max_tiles=6)
    worker = threading.Thread(
        target=lambda: [pager.prefetch([x, 150.0], 30.0, [10.0, 0.0], 5.0) for x in range(50, 600, 20)]
    )
    worker.start()
    for x in range(50, 600, 20):
        ids, scores = pager.scores_near(views[1], [float(x), 150.0], 30.0)
        assert len(ids) == len(scores)
    worker.join()
    # Bounded, and every load is either resident or was evicted (no tile cached twice).
    assert len(pager.resident_tiles) <= 6
    assert len(pager.stats.loaded) == pager.stats.evicted + len(pager.resident_tiles)
