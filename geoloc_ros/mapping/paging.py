"""Tile paging: the on-board localizer's bounded memory on a city-scale map bundle.

Views are stored tile by tile (:mod:`geoloc_ros.mapping.tiles`), so a tile's rows of every
per-view array (view positions, index count rows and norms) are one contiguous byte range of each
file. :class:`TilePagedIndex` reads those ranges with plain positioned reads (``os.pread``, never a
memory map: pages a memory map touched would stay resident and count in the process's memory for
as long as it runs) for the tiles around the position prior, turns each tile's count rows into its
normalised TF-IDF weights (:meth:`~geoloc_ros.bovw.index.TfIdfIndex.weight_rows`) once, and keeps
at most ``max_tiles`` tiles, least recently used first out. Its memory is therefore bounded by
``max_tiles`` whatever the size of the city; only the index's header (settings, IDF: kilobytes
per word) is held whole, besides the vocabularies.

:meth:`TilePagedIndex.prefetch` loads, ahead of need, the tiles around the current position and
around where the vehicle will be after ``lookahead_s`` along its direction of travel, so the tile
it drives into is already resident. :attr:`TilePagedIndex.stats` counts every tile read (which
tiles, how many bytes): ``test/mapping/test_paging.py`` checks that a query reads only the tiles
near its prior.

Scoring a subset of views (those near the prior) with the tile's weights is the exact TF-IDF score
:class:`~geoloc_ros.bovw.index.TfIdfIndex` gives those views; :meth:`TilePagedIndex.scores` has the
same signature, so a :class:`~geoloc_ros.bovw.retrieval.Retriever` can hold either. A query with
no prior (global re-localization) is answered by the whole index (memory-mapped, its posting lists
touched once per query; ``global_index``), as before. A :class:`TilePagedIndex` may be prefetched
from another thread while the frame thread scores (its tile cache is locked, tiles are read one at
a time).

The per-view feature arrays (``features/*.npy``) are read the same way, one candidate view at a
time: :class:`FeatureColumns` reads a view's rows of each column with ``os.pread`` into arrays the
caller owns (the localizer's bounded caches keep what they need: ``ViewCache``, the
co-visibility samples), so no page of a city's feature store stays mapped into the process.
:attr:`FeatureColumns.stats` counts the reads by tile; :meth:`FeatureColumns.prefetch` asks the
kernel to read the tiles ahead into its page cache (``POSIX_FADV_WILLNEED``: asynchronous, and the
page cache is the kernel's, reclaimable, not the process's memory).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from geoloc_ros.bovw.index import QueryConfig, RetrievalResult, TfIdfIndex, WordsByBag, top_k_indices
from geoloc_ros.mapping.errors import BundleFormatError
from geoloc_ros.mapping.tiles import TileTable

logger = logging.getLogger(__name__)


class NpyRows:
    """Rows ``[start, stop)`` of a C-ordered ``.npy`` file, read with ``os.pread`` (no memory map)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = -1
        try:
            with open(self.path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(handle)
                self.offset = handle.tell()
        except (OSError, ValueError) as exc:
            raise BundleFormatError(f"{self.path}: cannot read the .npy header ({exc})") from None
        if fortran or dtype.hasobject or len(shape) == 0:
            raise BundleFormatError(f"{self.path}: expected a C-ordered numeric array, got {dtype}{shape}")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = dtype
        self.row_bytes = int(dtype.itemsize * math.prod(shape[1:]))
        expected = self.offset + self.row_bytes * shape[0]
        if os.path.getsize(self.path) < expected:
            raise BundleFormatError(
                f"{self.path}: truncated ({os.path.getsize(self.path)} < {expected} bytes)"
            )
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """A fresh array of rows ``start:stop`` (owned by the caller)."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"{self.path}: rows {start}:{stop} outside [0, {self.shape[0]}]")
        size = (stop - start) * self.row_bytes
        buffer = bytearray(size)
        view = memoryview(buffer)
        done = 0
        while done < size:
            got = os.preadv(self._fd, [view[done:]], self.offset + start * self.row_bytes + done)
            if got <= 0:
                raise BundleFormatError(f"{self.path}: short read at row {start}")
            done += got
        return np.frombuffer(buffer, dtype=self.dtype).reshape(stop - start, *self.shape[1:])

    def advise_willneed(self, start: int, stop: int) -> None:
        """Ask the kernel to read rows ``start:stop`` into its page cache, without waiting."""
        if self._fd >= 0 and stop > start and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(
                self._fd,
                self.offset + start * self.row_bytes,
                (stop - start) * self.row_bytes,
                os.POSIX_FADV_WILLNEED,
            )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def tiles_ahead(
    tiles: TileTable,
    xy: npt.ArrayLike,
    radius_m: float,
    velocity_xy: npt.ArrayLike | None = None,
    lookahead_s: float = 10.0,
) -> list[int]:
    """The tiles meeting the disc of ``radius_m`` around ``xy`` and, given the velocity (m/s, ENU),
    around where the vehicle will be in ``lookahead_s``: the nearest first."""
    centre = np.asarray(xy, dtype=np.float64).reshape(-1)[:2]
    wanted = [int(t) for t in tiles.tiles_within(centre, radius_m)]
    if velocity_xy is not None:
        ahead = centre + np.asarray(velocity_xy, dtype=np.float64).reshape(-1)[:2] * lookahead_s
        wanted += [int(t) for t in tiles.tiles_within(ahead, radius_m) if int(t) not in wanted]
    return wanted


@dataclass
class FeatureReadStats:
    """What a :class:`FeatureColumns` read: row ranges (one per view and column read), bytes, and
    the reads per tile; ``prefetched``: the tiles whose rows the kernel was asked to read ahead."""

    reads: int = 0
    bytes_read: int = 0
    tiles: Counter[int] = field(default_factory=Counter)
    prefetched: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {
            "feature_reads": self.reads,
            "feature_bytes_read": self.bytes_read,
            "feature_tiles_read": len(self.tiles),
            "feature_tiles_prefetched": len(self.prefetched),
        }


class FeatureColumns:
    """A bundle's feature columns (``features/<name>.npy``), read row range by row range with
    ``os.pread`` (no memory map: see the module docstring).

    ``tile_rows``: the first feature row of each tile and the end (``(T + 1,)``: the feature
    offsets of the tiles' first views), so that every read is counted by tile and a tile's rows are
    one byte range of each column. Thread-safe (positioned reads; the counters under a lock).
    """

    def __init__(self, files: Mapping[str, str | Path], tile_rows: np.ndarray) -> None:
        self._columns = {name: NpyRows(path) for name, path in files.items()}
        self.tile_rows = np.asarray(tile_rows, dtype=np.int64)
        self.stats = FeatureReadStats()
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def column(self, name: str) -> NpyRows:
        return self._columns[name]

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of column ``name`` (an array the caller owns)."""
        rows = self._columns[name]
        part = rows.read(start, stop)
        if stop > start:
            tile = int(np.searchsorted(self.tile_rows, start, side="right")) - 1
            with self._lock:
                self.stats.reads += 1
                self.stats.bytes_read += (stop - start) * rows.row_bytes
                self.stats.tiles[tile] += 1
        return part

    def prefetch(self, tiles: Iterable[int]) -> None:
        """Have the kernel read ``tiles``' rows of every column ahead of need (asynchronous)."""
        for t in tiles:
            start, stop = int(self.tile_rows[t]), int(self.tile_rows[t + 1])
            for rows in self._columns.values():
                rows.advise_willneed(start, stop)
            with self._lock:
                self.stats.prefetched.append(int(t))

    def close(self) -> None:
        for rows in self._columns.values():
            rows.close()


@dataclass
class PagingStats:
    """What a :class:`TilePagedIndex` read: tiles loaded (in order), evicted, bytes read."""

    loaded: list[int] = field(default_factory=list)
    evicted: int = 0
    bytes_read: int = 0
    hits: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "tiles_loaded": len(self.loaded),
            "tiles_evicted": self.evicted,
            "bytes_read": self.bytes_read,
            "hits": self.hits,
        }


@dataclass(frozen=True)
class _Tile:
    first_view: int
    weights: sp.csr_array  # (n, words) float32, normalised TF-IDF
    positions: np.ndarray  # (n, 2) float64 ENU

    @property
    def nbytes(self) -> int:
        w = self.weights
        return int(w.data.nbytes + w.indices.nbytes + w.indptr.nbytes + self.positions.nbytes)


class TilePagedIndex:
    """A TF-IDF index read tile by tile around the position prior (see the module docstring).

    ``index_dir`` / ``name``: the index files (``{name}.json``, ``{name}.counts.*.npy``,
    ``{name}.norms.npy``, ...); ``positions``: the views' ``(V, 3)`` ENU positions file
    (``views/position.npy``); ``tiles``: the bundle's tile table. One thread may :meth:`prefetch`
    while another scores: the tile cache and the counters are locked, and tiles are read one at a
    time (room made first), so at most ``max_tiles`` tiles plus the one being read are held.
    """

    def __init__(
        self, index_dir: str | Path, name: str, tiles: TileTable, positions: str | Path, max_tiles: int = 16
    ) -> None:
        if max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
        folder = Path(index_dir)
        self.index_dir, self.name = folder, name
        self.header = TfIdfIndex.load_header(folder, name)
        self.tiles = tiles
        self.max_tiles = int(max_tiles)
        self._indptr = NpyRows(folder / f"{name}.counts.indptr.npy")
        self._indices = NpyRows(folder / f"{name}.counts.indices.npy")
        self._data = NpyRows(folder / f"{name}.counts.data.npy")
        self._norms = NpyRows(folder / f"{name}.norms.npy")
        self._positions = NpyRows(positions)
        n_views = tiles.n_rows
        for rows, expected in (
            (self._indptr, n_views + 1),
            (self._norms, n_views),
            (self._positions, n_views),
        ):
            if len(rows) != expected:
                raise BundleFormatError(f"{rows.path}: {len(rows)} rows, the tiles hold {n_views} views")
        self._cache: OrderedDict[int, _Tile] = OrderedDict()
        self._lock = threading.Lock()  # the cache and the counters
        self._load_lock = threading.Lock()  # one tile read at a time
        self._global: TfIdfIndex | None = None
        self.stats = PagingStats()

    # Retriever's view of an index
    @property
    def bag_names(self) -> tuple[str, ...]:
        return self.header.bag_names

    @property
    def bag_sizes(self) -> tuple[int, ...]:
        return self.header.bag_sizes

    @property
    def n_views(self) -> int:
        return self.tiles.n_rows

    @property
    def resident_tiles(self) -> list[int]:
        with self._lock:
            return list(self._cache)

    @property
    def resident_bytes(self) -> int:
        with self._lock:
            return sum(tile.nbytes for tile in self._cache.values())

    @property
    def global_index(self) -> TfIdfIndex:
        """The whole index, memory-mapped (queries without a prior)."""
        if self._global is None:
            self._global = TfIdfIndex.load(self.index_dir, self.name)
        return self._global

    # ------------------------------------------------------------------------------ tiles
    def tile(self, t: int) -> _Tile:
        """Tile ``t`` (loaded on first use, most recently used afterwards)."""
        cached = self._cached(t)
        if cached is not None:
            return cached
        # One load at a time (a prefetch and a query wanting the same tile read it once), and room
        # made first: at most max_tiles tiles plus the one being read are ever held.
        with self._load_lock:
            cached = self._cached(t)
            if cached is not None:
                return cached
            with self._lock:
                while len(self._cache) >= self.max_tiles:
                    self._cache.popitem(last=False)
                    self.stats.evicted += 1
            tile = self._read_tile(t)
            with self._lock:
                self._cache[t] = tile
                self.stats.loaded.append(int(t))
        return tile

    def _cached(self, t: int) -> _Tile | None:
        with self._lock:
            cached = self._cache.get(t)
            if cached is not None:
                self._cache.move_to_end(t)
                self.stats.hits += 1
            return cached

    def _read_tile(self, t: int) -> _Tile:
        start, stop = int(self.tiles.starts[t]), int(self.tiles.starts[t + 1])
        indptr = self._indptr.read(start, stop + 1).astype(np.int64)
        lo, hi = int(indptr[0]), int(indptr[-1])
        indices = self._indices.read(lo, hi).astype(np.int32, copy=False)
        data = self._data.read(lo, hi)
        norms = self._norms.read(start, stop)
        positions = self._positions.read(start, stop)[:, :2].astype(np.float64)
        # int32 row pointers (a tile's entries fit): scipy would widen the column indices to int64
        # to match int64 ones, half again the tile's memory.
        counts = sp.csr_array(
            (data, indices, (indptr - lo).astype(np.int32)), shape=(stop - start, self.header.n_words)
        )
        with self._lock:
            self.stats.bytes_read += int(
                (stop - start + 1) * self._indptr.row_bytes
                + (hi - lo) * (self._indices.row_bytes + self._data.row_bytes)
                + (stop - start) * (self._norms.row_bytes + self._positions.row_bytes)
            )
        return _Tile(start, self.header.weight_rows(counts, norms), positions)

    def prefetch(
        self,
        xy: npt.ArrayLike,
        radius_m: float,
        velocity_xy: npt.ArrayLike | None = None,
        lookahead_s: float = 10.0,
    ) -> list[int]:
        """Load the tiles meeting the disc of ``radius_m`` around ``xy`` and, given the velocity
        (m/s, ENU), around where the vehicle will be in ``lookahead_s``; the tiles, in load order."""
        wanted = tiles_ahead(self.tiles, xy, radius_m, velocity_xy, lookahead_s)
        if len(wanted) > self.max_tiles:
            logger.warning(
                "prefetch wants %d tiles, %d fit (max_tiles): the nearest are kept",
                len(wanted),
                self.max_tiles,
            )
            wanted = wanted[: self.max_tiles]
        # Load the farthest first so the nearest end as most recently used.
        for t in reversed(wanted):
            self.tile(t)
        return wanted

    # ------------------------------------------------------------------------------ scoring
    def scores_near(
        self,
        words: WordsByBag,
        xy: npt.ArrayLike,
        radius_m: float,
        weights: Mapping[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(view ids (sorted), float32 scores)`` of the views within ``radius_m`` of ``xy``."""
        centre = np.asarray(xy, dtype=np.float64).reshape(-1)[:2]
        query = self.header.dense_query(words, weights)
        ids, scores = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        for t in self.tiles.tiles_within(centre, radius_m):
            tile = self.tile(int(t))
            offsets = tile.positions - centre
            inside = np.flatnonzero(np.einsum("ij,ij->i", offsets, offsets) <= radius_m * radius_m)
            if len(inside):
                ids.append(inside + tile.first_view)
                scores.append(np.asarray(tile.weights[inside] @ query, dtype=np.float32))
        return np.concatenate(ids), np.concatenate(scores)

    def scores(
        self,
        words: WordsByBag,
        weights: Mapping[str, float] | None = None,
        subset: np.ndarray | None = None,
        max_touched_postings: int | None = None,
        rescore_candidates: int = 300,
    ) -> tuple[np.ndarray, bool]:
        """:meth:`TfIdfIndex.scores`: with ``subset`` (view ids) from the tiles holding them (exact),
        without it from :attr:`global_index`."""
        if subset is None:
            return self.global_index.scores(words, weights, None, max_touched_postings, rescore_candidates)
        ids = np.unique(np.asarray(subset, dtype=np.int64))
        if ids.size and (ids[0] < 0 or ids[-1] >= self.n_views):
            raise IndexError(f"subset: view ids must be in [0, {self.n_views})")
        query = self.header.dense_query(words, weights)
        out = np.zeros(len(ids), dtype=np.float32)
        tile_of = np.searchsorted(self.tiles.starts, ids, side="right") - 1
        for t in np.unique(tile_of):
            at = np.flatnonzero(tile_of == t)
            tile = self.tile(int(t))
            out[at] = tile.weights[ids[at] - tile.first_view] @ query
        return out, True

    def query_with(
        self, words: WordsByBag, config: QueryConfig, subset: np.ndarray | None = None
    ) -> RetrievalResult:
        """:meth:`TfIdfIndex.query_with`: the top-K of ``subset`` from its tiles, else of the whole index."""
        if subset is None:
            return self.global_index.query_with(words, config)
        ids = np.unique(np.asarray(subset, dtype=np.int64))
        scores, _ = self.scores(words, config.weights, ids)
        best = top_k_indices(scores, config.top_k)
        return RetrievalResult(view_ids=ids[best], scores=scores[best], exact=True)

    def close(self) -> None:
        for rows in (self._indptr, self._indices, self._data, self._norms, self._positions):
            rows.close()
        with self._lock:
            self._cache.clear()
