import numpy as np
import pytest

from geoloc_ros.mapping.errors import BundleFormatError
from geoloc_ros.mapping.tiles import TileTable, tile_keys, tile_sort_order


def sorted_table(xy: np.ndarray, size: float) -> tuple[TileTable, np.ndarray]:
    order = tile_sort_order(xy, size)
    return TileTable.from_sorted_positions(xy[order], size), xy[order]


def test_tile_keys_floor_negative_coordinates():
    keys = tile_keys(np.array([[0.0, 0.0], [249.9, -0.1], [-250.0, 500.0], [-250.1, 1e-9]]), 250.0)
    assert keys.tolist() == [[0, 0], [0, -1], [-1, 2], [-2, 0]]
    with pytest.raises(ValueError, match="tile_size_m"):
        tile_keys(np.zeros((1, 2)), 0.0)


def test_sort_groups_tiles_into_contiguous_lexicographic_ranges():
    rng = np.random.default_rng(3)
    xy = rng.uniform(-900, 900, size=(500, 2))
    tie = rng.integers(0, 5, size=500)
    order = tile_sort_order(xy, 250.0, tie)
    keys = tile_keys(xy[order], 250.0)
    flat = [tuple(k) for k in keys]
    assert flat == sorted(flat)  # lexicographic (ix, iy)
    table = TileTable.from_sorted_positions(xy[order], 250.0)
    assert table.n_rows == 500 and table.n_tiles == len(set(flat))
    for t in range(table.n_tiles):
        rows = slice(table.starts[t], table.starts[t + 1])
        assert np.all(keys[rows] == table.keys[t])
        assert np.all(np.diff(tie[order][rows]) >= 0)  # the tie-breaker orders rows within a tile
    assert np.array_equal(table.row_tiles(), np.repeat(np.arange(table.n_tiles), np.diff(table.starts)))


@pytest.mark.parametrize("radius", [0.0, 10.0, 130.0, 250.0, 600.0, 5000.0])
def test_tiles_within_is_exactly_the_tiles_meeting_the_disc(radius):
    rng = np.random.default_rng(7)
    xy = rng.uniform(-1000, 1000, size=(400, 2))
    # Many tiles (a binary search per column) and a few (a scan of the table).
    for table, _ in (sorted_table(xy, 250.0), sorted_table(xy[:4], 250.0)):
        for centre in rng.uniform(-1200, 1200, size=(20, 2)):
            found = set(table.tiles_within(centre, radius).tolist())
            low = table.keys * 250.0
            nearest = np.clip(centre, low, low + 250.0)
            expected = set(np.flatnonzero(np.linalg.norm(nearest - centre, axis=1) <= radius).tolist())
            assert found == expected
            assert np.all(np.diff(table.tiles_within(centre, radius)) > 0)


def test_find_and_tile_of():
    xy = np.array([[10.0, 10.0], [300.0, -20.0], [-5.0, 700.0]])
    table, _ = sorted_table(xy, 250.0)
    assert table.tile_of([299.0, -1.0]) == (1, -1)
    assert table.find((1, -1)) >= 0 and tuple(table.keys[table.find((1, -1))]) == (1, -1)
    assert table.find((5, 5)) == -1
    assert table.rows_of([table.find((0, 0))]).tolist() == [table.starts[table.find((0, 0))]]


def test_invalid_tables_are_refused():
    with pytest.raises(BundleFormatError, match="sorted"):
        TileTable(250.0, np.array([[1, 0], [0, 0]]), np.array([0, 1, 2]))
    with pytest.raises(BundleFormatError, match="non-decreasing"):
        TileTable(250.0, np.array([[0, 0], [1, 0]]), np.array([0, 2, 1]))
    empty = TileTable.from_sorted_positions(np.zeros((0, 2)), 250.0)
    assert empty.n_tiles == 0 and empty.tiles_within([0.0, 0.0], 100.0).size == 0
