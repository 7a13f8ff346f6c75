"""Geographic tiles: square cells of the map's ENU plane that make every bundle array spatially local.

A view belongs to the tile holding its camera centre: ``(floor(x / s), floor(y / s))`` with ``s``
the tile size in metres. The build sorts views by tile (tiles in lexicographic ``(ix, iy)`` order),
so each tile's views are one contiguous row range ``[start, stop)`` of every per-view array, and
of the features, which are stored view after view. :class:`TileTable` is that table of ranges; a
query around a position prior reads only the rows of the tiles that overlap its radius, so a
city-scale bundle (memory-mapped) touches only the pages of nearby tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geoloc_ros.mapping.errors import BundleFormatError


def tile_keys(xy: npt.ArrayLike, tile_size_m: float) -> np.ndarray:
    """``(N, 2)`` int64 tile coordinates ``(ix, iy)`` of ENU points ``(N, 2+)``."""
    if not (math.isfinite(tile_size_m) and tile_size_m > 0):
        raise ValueError(f"tile_size_m must be a positive number, got {tile_size_m}")
    points = np.asarray(xy, dtype=np.float64).reshape(-1, np.shape(xy)[-1])[:, :2]
    if not np.all(np.isfinite(points)):
        raise ValueError("tile_keys: positions must be finite")
    return np.floor(points / tile_size_m).astype(np.int64)


def tile_sort_order(xy: npt.ArrayLike, tile_size_m: float, *tie_breakers: np.ndarray) -> np.ndarray:
    """Permutation sorting points by tile ``(ix, iy)``, then by ``tie_breakers`` (first is primary)."""
    keys = tile_keys(xy, tile_size_m)
    # np.lexsort sorts by its last key first.
    return np.lexsort((*reversed(tie_breakers), keys[:, 1], keys[:, 0]))


@dataclass(frozen=True)
class TileTable:
    """Tiles present in a bundle, sorted by ``(ix, iy)``, and the row range of each.

    ``keys[t]`` are tile ``t``'s coordinates; its views are rows ``starts[t]:starts[t + 1]``.
    """

    tile_size_m: float
    keys: np.ndarray  # (T, 2) int64, lexicographically sorted, unique
    starts: np.ndarray  # (T + 1,) int64, non-decreasing, starts[0] = 0

    def __post_init__(self) -> None:
        keys = np.asarray(self.keys, dtype=np.int64).reshape(-1, 2)
        starts = np.asarray(self.starts, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "starts", starts)
        if len(starts) != len(keys) + 1 or (len(starts) and starts[0] != 0) or np.any(np.diff(starts) < 0):
            raise BundleFormatError(
                f"tile table: {len(keys)} tiles need {len(keys) + 1} non-decreasing row starts from 0, "
                f"got {len(starts)}"
            )
        if len(keys) > 1:
            order = np.lexsort((keys[:, 1], keys[:, 0]))
            distinct = np.any(np.diff(keys[order], axis=0) != 0, axis=1)
            if not np.array_equal(order, np.arange(len(keys))) or not np.all(distinct):
                raise BundleFormatError("tile table: tile keys must be unique and sorted by (ix, iy)")

    @classmethod
    def from_sorted_positions(cls, xy: npt.ArrayLike, tile_size_m: float) -> TileTable:
        """The table of positions already sorted by tile (e.g. with :func:`tile_sort_order`)."""
        keys = tile_keys(xy, tile_size_m)
        if len(keys) == 0:
            return cls(tile_size_m, np.zeros((0, 2), np.int64), np.zeros(1, np.int64))
        change = np.ones(len(keys), dtype=bool)
        change[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        firsts = np.flatnonzero(change)
        return cls(tile_size_m, keys[firsts], np.append(firsts, len(keys)).astype(np.int64))

    @property
    def n_tiles(self) -> int:
        return len(self.keys)

    @property
    def n_rows(self) -> int:
        return int(self.starts[-1])

    def row_tiles(self) -> np.ndarray:
        """``(n_rows,)`` int32: the tile index of every row."""
        return np.repeat(np.arange(self.n_tiles, dtype=np.int32), np.diff(self.starts))

    def find(self, key: tuple[int, int]) -> int:
        """Index of tile ``(ix, iy)``, or -1 when the bundle has no view there."""
        pos = int(np.searchsorted(self._flat(), self._flat_of(np.asarray([key], dtype=np.int64))[0]))
        if pos < self.n_tiles and tuple(int(v) for v in self.keys[pos]) == tuple(key):
            return pos
        return -1

    def tile_of(self, xy: npt.ArrayLike) -> tuple[int, int]:
        """Tile coordinates ``(ix, iy)`` of one ENU position (present in the bundle or not)."""
        key = tile_keys(np.asarray(xy, dtype=np.float64).reshape(1, -1), self.tile_size_m)[0]
        return int(key[0]), int(key[1])

    def tiles_within(self, xy: npt.ArrayLike, radius_m: float) -> np.ndarray:
        """Indices of the bundle's tiles that intersect the disc of ``radius_m`` around ``xy``."""
        if not (math.isfinite(radius_m) and radius_m >= 0):
            raise ValueError(f"radius_m must be a finite number >= 0, got {radius_m}")
        centre = np.asarray(xy, dtype=np.float64).reshape(-1)[:2]
        if not np.all(np.isfinite(centre)):
            raise ValueError(f"position must be finite, got {centre.tolist()}")
        size = self.tile_size_m
        lo = np.floor((centre - radius_m) / size).astype(np.int64)
        hi = np.floor((centre + radius_m) / size).astype(np.int64)
        if self.n_tiles == 0:
            return np.zeros(0, dtype=np.int64)
        if hi[0] - lo[0] + 1 > self.n_tiles:
            # A radius wider than the map: a scan of the (small) table beats a search per column.
            in_box = np.all((self.keys >= lo) & (self.keys <= hi), axis=1)
            candidates = np.flatnonzero(in_box).astype(np.int64)
        else:
            # Columns ix in [lo_x, hi_x]: one binary search per column over the flat keys.
            flat = self._flat()
            found = []
            for ix in range(int(lo[0]), int(hi[0]) + 1):
                first = np.searchsorted(flat, self._flat_of(np.array([[ix, lo[1]]]))[0], side="left")
                last = np.searchsorted(flat, self._flat_of(np.array([[ix, hi[1]]]))[0], side="right")
                found.append(np.arange(first, last, dtype=np.int64))
            candidates = np.concatenate(found)
        # Keep tiles whose square actually meets the disc (nearest point of the square within r).
        low_corner = self.keys[candidates].astype(np.float64) * size
        nearest = np.clip(centre, low_corner, low_corner + size)
        inside = np.sum((nearest - centre) ** 2, axis=1) <= radius_m**2
        return candidates[inside]

    def rows_of(self, tiles: npt.ArrayLike) -> np.ndarray:
        """Row indices (sorted) of the given tiles."""
        chosen = np.sort(np.asarray(tiles, dtype=np.int64).reshape(-1))
        if chosen.size == 0:
            return np.zeros(0, dtype=np.int64)
        starts, stops = self.starts[chosen], self.starts[chosen + 1]
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, stops, strict=True)])

    def _flat(self) -> np.ndarray:
        return self._flat_of(self.keys)

    @staticmethod
    def _flat_of(keys: np.ndarray) -> np.ndarray:
        """Order-preserving scalar of ``(ix, iy)`` keys for binary search (|ix|, |iy| < 2^31)."""
        k = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        return (k[:, 0] << 32) + (k[:, 1] + (1 << 31))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys, "starts": self.starts}

    @classmethod
    def from_arrays(cls, tile_size_m: float, keys: np.ndarray, starts: np.ndarray) -> TileTable:
        return cls(tile_size_m, np.asarray(keys), np.asarray(starts))
