"""The build's scratch space: per-panorama results on disk, and the descriptor sample for the vocabularies.

Workers' results stream into a :class:`StagingArea` as they complete (one uncompressed ``.npz``
per panorama, plus its words once quantised), so the build holds only per-view metadata in memory
however large the panorama set. The area is a hidden sibling of the output, removed when the build
ends, successfully or not; one left by a killed build is removed by the next build of that output.

:class:`KeyedSample` keeps a uniform random sample of descriptors of bounded size. Each
descriptor's random key derives from the build seed and its panorama's id
(:func:`panorama_sample_keys`), so the sample does not depend on the order in which panoramas
complete, nor on the number of workers.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from types import TracebackType

import numpy as np

from geoloc_ros.bovw.features import DESCRIPTOR_DIM
from geoloc_ros.io.atomic import give_default_mode, remove_stale_scratch, scratch_prefix
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.extract import FEATURE_ARRAYS, PanoramaResult

_CACHED_SLOTS = 4


def panorama_sample_keys(seed: int, pano_id: str, count: int) -> np.ndarray:
    """``count`` uniform keys in [0, 1) for the descriptors of panorama ``pano_id`` (float64)."""
    digest = hashlib.sha256(f"{seed}\x00{pano_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little")).random(count)


class KeyedSample:
    """The ``capacity`` rows with the smallest keys seen so far (a bottom-k sample).

    Batches are buffered and the sample is cut back to ``capacity`` only when the buffer holds
    as many rows again: each row is copied a bounded number of times, so a city of 10^5
    panoramas costs the client time linear in its features (cutting back after every batch copied
    the whole sample per panorama).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise MapBuildError(f"sample capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self._keys: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._buffered = 0

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if len(keys) != len(rows):
            raise MapBuildError(f"KeyedSample.add: {len(keys)} keys for {len(rows)} rows")
        self.seen += len(rows)
        if len(rows) == 0:
            return
        self._keys.append(np.asarray(keys, dtype=np.float64))
        self._rows.append(np.asarray(rows, dtype=np.uint8))
        self._buffered += len(rows)
        if self._buffered >= 2 * self.capacity:
            self._compact()

    def _compact(self) -> None:
        """Keep the ``capacity`` smallest keys of everything buffered (one array each)."""
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, dtype=np.float64)
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, DESCRIPTOR_DIM), dtype=np.uint8)
        if len(keys) > self.capacity:
            keep = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            keys, rows = keys[keep], rows[keep]
        self._keys, self._rows, self._buffered = [keys], [rows], len(keys)

    def __len__(self) -> int:
        return min(self._buffered, self.capacity)

    def sample(self) -> np.ndarray:
        """The kept rows in key order: the same whatever order the batches came in."""
        self._compact()
        return self._rows[0][np.argsort(self._keys[0], kind="stable")]


class StagingArea:
    """A temporary directory beside ``target`` holding per-panorama results (a context manager)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._root: Path | None = None
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def __enter__(self) -> StagingArea:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(self.target)  # a killed build's staging folder
        prefix = scratch_prefix(self.target)
        self._root = Path(tempfile.mkdtemp(prefix=prefix, suffix=".staging", dir=self.target.parent))
        give_default_mode(self._root)  # it becomes the bundle
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cache.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    @property
    def root(self) -> Path:
        if self._root is None:
            raise MapBuildError("staging area used outside its context")
        return self._root

    def _path(self, slot: int, what: str) -> Path:
        return self.root / f"panorama_{slot:07d}.{what}"

    def write(self, slot: int, result: PanoramaResult) -> None:
        """Store a panorama's features and JPEG bytes (its metadata stays with the caller)."""
        arrays: dict[str, np.ndarray] = {name: result.features[name] for name in FEATURE_ARRAYS}
        arrays.update(
            feature_offsets=result.feature_offsets, jpeg=result.jpeg, jpeg_offsets=result.jpeg_offsets
        )
        np.savez(self._path(slot, "npz"), allow_pickle=False, **arrays)

    def read_descriptors(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """``(kind, descriptors)`` of a staged panorama, read without the rest of its arrays."""
        with np.load(self._path(slot, "npz"), allow_pickle=False) as data:
            return data["kind"], data["descriptors"]

    def write_words(self, slot: int, words: np.ndarray) -> None:
        np.save(self._path(slot, "words.npy"), np.asarray(words, dtype=np.int32), allow_pickle=False)
        self._cache.pop(slot, None)

    def load(self, slot: int) -> dict[str, np.ndarray]:
        """Every array of a staged panorama, its ``words`` included (a few recent slots are cached)."""
        if slot in self._cache:
            self._cache.move_to_end(slot)
            return self._cache[slot]
        with np.load(self._path(slot, "npz"), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        words_path = self._path(slot, "words.npy")
        if not words_path.is_file():
            raise MapBuildError(f"{words_path}: panorama {slot} was not quantised")
        arrays["words"] = np.load(words_path, allow_pickle=False)
        self._cache[slot] = arrays
        if len(self._cache) > _CACHED_SLOTS:
            self._cache.popitem(last=False)
        return arrays
