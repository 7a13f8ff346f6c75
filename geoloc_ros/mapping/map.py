"""The map bundle, typed and read-only: what the on-board localizer and PoseNet training read.

:class:`MapBundle` opens a bundle written by :func:`geoloc_ros.mapping.build.build_map` (layout in
docs/map_bundle.md) on top of the generic, checksummed :class:`~geoloc_ros.mapping.container.Bundle`.
Per-view arrays are memory-mapped: opening costs the manifest (and the checksum pass the caller
asks for), and a lookup touches only the rows it reads. Views are stored tile by tile
(:mod:`geoloc_ros.mapping.tiles`), features view after view, so the features of one view, or of the
views around a position, are contiguous row ranges. Those are read with positioned reads into
arrays the caller owns (:class:`~geoloc_ros.mapping.paging.FeatureColumns`), never memory-mapped:
the pages of a city's feature store that a mapping touched would stay in the process's resident
memory, while the localizer's own caches of views are bounded.

Not thread-safe for the lazily created members (vocabularies, index, ...): create them once (e.g.
by reading the properties at start-up) before sharing the bundle between threads.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import ValidationError

from geoloc_ros.bovw.cosimilarity import Topology, cosimilarity_from_arrays, support_graph
from geoloc_ros.bovw.descriptor_codec import ProductQuantizer
from geoloc_ros.bovw.errors import BovwError
from geoloc_ros.bovw.features import FeatureConfig, FeatureSet
from geoloc_ros.bovw.index import QueryConfig, TfIdfIndex
from geoloc_ros.bovw.kinds import feature_kind
from geoloc_ros.bovw.retrieval import Retriever
from geoloc_ros.bovw.vocabulary import Vocabularies, vocabulary_file_stem
from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import format_validation_error
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.panorama_set import PanoramaRecord
from geoloc_ros.mapping.config import MapBuildConfig
from geoloc_ros.mapping.container import Bundle, Verification
from geoloc_ros.mapping.errors import BundleFormatError
from geoloc_ros.mapping.origin import bundle_origin
from geoloc_ros.mapping.paging import FeatureColumns, TilePagedIndex
from geoloc_ros.mapping.tiles import TileTable

MAP_CONTENT = "geoloc_ros.map"
"""``manifest["content"]`` of a map bundle (the container may one day hold other contents)."""

# Members of the bundle (see docs/map_bundle.md).
VIEW_ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "pano_index": ("int32", ()),
    "local_index": ("int32", ()),
    "kind": ("uint8", ()),
    "offset_m": ("float32", ()),
    "yaw_deg": ("float32", ()),
    "pitch_deg": ("float32", ()),
    "T_map_optical": ("float64", (4, 4)),
    "position": ("float64", (3,)),
    "hole_ratio": ("float32", ()),
    "tile": ("int32", ()),
}
"""``views/<name>.npy``: dtype and trailing shape of every per-view array."""

FEATURE_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "keypoints_xy": ("float32", (2,)),
    "size": ("float32", ()),
    "angle": ("float32", ()),
    "response": ("float32", ()),
    "kind": ("uint8", ()),
    "descriptors": ("uint8", (128,)),
    "points_map": ("float32", (3,)),
    "words": ("int32", ()),
}
"""``features/<name>.npy``: dtype and trailing shape of every per-feature array."""

FEATURE_OFFSETS = "features/offsets"
FEATURE_STORAGE = "feature_storage"
"""Manifest key of how the feature columns are stored (format 2; absent: raw, as format 1)."""
DESCRIPTOR_CODES = "features/descriptor_codes"
DESCRIPTOR_CODEBOOK = "features/descriptor_codebook"
HALF_PRECISION_COLUMNS = ("size", "angle", "response")
"""Feature columns a compact bundle may store as float16 (read back as float32)."""
IMAGE_BYTES = "images/jpeg"
IMAGE_OFFSETS = "images/offsets"
PANORAMA_RECORDS = "panoramas/records"
PANORAMA_POSITIONS = "panoramas/position"
PANORAMA_VIRTUAL_OFFSETS = "panoramas/virtual_offsets"
TILE_KEYS = "tiles/keys"
TILE_STARTS = "tiles/starts"
VOCABULARY_DIR = "vocabulary"
INDEX_DIR = "index"
INDEX_NAME = "index"
COSIMILARITY_PREFIX = "cosimilarity"
TOPOLOGY_PREFIX = "topology"


@dataclass(frozen=True)
class FeatureStorage:
    """How a bundle stores its feature columns (``manifest["feature_storage"]``).

    ``descriptors``: ``"raw"`` ((N, 128) uint8 in ``features/descriptors.npy``) or ``"pq"``
    (``features/descriptor_codes.npy`` (N, pq_bytes) uint8 + ``features/descriptor_codebook.npy``,
    :class:`~geoloc_ros.bovw.descriptor_codec.ProductQuantizer`); ``float16``: the columns of
    :data:`HALF_PRECISION_COLUMNS` stored as float16.
    """

    descriptors: Literal["raw", "pq"] = "raw"
    pq_bytes: int = 0
    float16: tuple[str, ...] = ()

    @classmethod
    def from_manifest(cls, value: object, source: str) -> FeatureStorage:
        if value is None:
            return cls()
        if not isinstance(value, dict) or set(value) - {"descriptors", "pq_bytes", "float16"}:
            raise BundleFormatError(f"{source}: expected {{descriptors, pq_bytes, float16}}, got {value!r}")
        descriptors = value.get("descriptors", "raw")
        pq_bytes = value.get("pq_bytes", 0)
        float16 = value.get("float16", [])
        if descriptors not in ("raw", "pq"):
            raise BundleFormatError(f"{source}.descriptors: expected 'raw' or 'pq', got {descriptors!r}")
        if descriptors == "pq" and (not isinstance(pq_bytes, int) or pq_bytes < 1 or 128 % pq_bytes):
            raise BundleFormatError(f"{source}.pq_bytes: expected a divisor of 128, got {pq_bytes!r}")
        if not isinstance(float16, list) or not set(float16) <= set(HALF_PRECISION_COLUMNS):
            raise BundleFormatError(
                f"{source}.float16: expected a list of {list(HALF_PRECISION_COLUMNS)}, got {float16!r}"
            )
        return cls(descriptors, int(pq_bytes) if descriptors == "pq" else 0, tuple(float16))

    def to_manifest(self) -> dict[str, Any]:
        return {"descriptors": self.descriptors, "pq_bytes": self.pq_bytes, "float16": list(self.float16)}


class ViewKind(IntEnum):
    """Value of ``views.kind``."""

    RECTIFIED = 0
    VIRTUAL = 1


@dataclass(frozen=True)
class ViewTable:
    """Per-view arrays (memory-mapped, read-only), all of length ``n_views``, in tile order.

    ``pano_index`` indexes :attr:`MapBundle.panorama_ids`; ``local_index`` is the view's rank
    among its panorama's views (rectified yaws first, then virtual views by offset and yaw);
    ``kind`` is a :class:`ViewKind`; ``offset_m`` the signed along-street offset of a virtual
    view from its panorama (0 for rectified views); ``yaw_deg`` the compass bearing of the
    optical axis and ``pitch_deg`` its tilt (positive looks down); ``T_map_optical`` the camera
    pose (4x4, ``p_map = T @ p_optical``); ``position`` its centre (ENU metres); ``hole_ratio``
    the fraction of null pixels (0 for rectified views); ``tile`` the index of the view's tile in
    :attr:`MapBundle.tiles`.
    """

    pano_index: np.ndarray
    local_index: np.ndarray
    kind: np.ndarray
    offset_m: np.ndarray
    yaw_deg: np.ndarray
    pitch_deg: np.ndarray
    T_map_optical: np.ndarray
    position: np.ndarray
    hole_ratio: np.ndarray
    tile: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def pose(self, view: int) -> Pose3D:
        """``T_map_optical`` of ``view`` as a :class:`Pose3D`."""
        return Pose3D.from_matrix(self.T_map_optical[view])


@dataclass(frozen=True)
class ViewFeatures:
    """Features of several views, concatenated (what matching against candidates wants).

    View ``view_ids[k]``'s features are rows ``offsets[k]:offsets[k + 1]``; ``view_of_feature``
    gives each row's position ``k``. ``words`` are word ids in each feature's own bag.
    """

    view_ids: np.ndarray  # (k,) int64
    offsets: np.ndarray  # (k + 1,) int64
    features: FeatureSet
    points_map: np.ndarray  # (M, 3) float32, NaN without depth
    words: np.ndarray  # (M,) int32

    @property
    def view_of_feature(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.view_ids), dtype=np.int32), np.diff(self.offsets))

    def of_view(self, k: int) -> tuple[FeatureSet, np.ndarray]:
        """Features and points of the ``k``-th view of the batch (views, not copies)."""
        rows = slice(int(self.offsets[k]), int(self.offsets[k + 1]))
        return self.features.subset(rows), self.points_map[rows]


def map_content_id(origin: GeoOrigin, panorama_ids: Sequence[str], positions_enu: npt.ArrayLike) -> str:
    """Identity of a map's content: its origin and its panoramas' ids and ENU positions (cm), so
    every build of the same panorama set has it (``MapBundle.bundle_id``)."""
    content = {
        "origin": origin.to_dict(),
        "panoramas": [
            [pid, [round(float(v), 2) for v in pos]]
            for pid, pos in zip(panorama_ids, np.asarray(positions_enu, dtype=float), strict=True)
        ],
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
    return digest[:16]


class MapBundleViewSource:
    """The bundle's views as a PoseNet training source (``geoloc_ros.posenet.dataset.ViewSource``):
    ``camera``, ``len``, ``image(i)``, ``pose(i)`` (``T_map_optical``) and ``group(i)`` (panorama id)."""

    def __init__(self, bundle: MapBundle, views: npt.ArrayLike | None = None) -> None:
        if not bundle.has_images:
            raise BundleFormatError(f"{bundle.path}: the bundle was built without view images")
        self._bundle = bundle
        self._views = np.arange(bundle.n_views) if views is None else np.asarray(views, dtype=np.int64)

    @property
    def camera(self) -> PinholeCamera:
        return self._bundle.image_camera

    def __len__(self) -> int:
        return len(self._views)

    def image(self, index: int) -> np.ndarray:
        return self._bundle.view_image(int(self._views[index]))

    def pose(self, index: int) -> Pose3D:
        return self._bundle.views.pose(int(self._views[index]))

    def group(self, index: int) -> str:
        view = int(self._views[index])
        return self._bundle.panorama_ids[int(self._bundle.views.pano_index[view])]


class MapBundle:
    """A map bundle opened read-only (see the module docstring)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.path = bundle.path
        self.manifest = bundle.manifest
        if self.manifest.get("content") != MAP_CONTENT:
            raise BundleFormatError(
                f"{self.path / 'manifest.json'}: not a map bundle (content {self.manifest.get('content')!r}, "
                f"expected {MAP_CONTENT!r})"
            )
        self.origin: GeoOrigin = bundle_origin(bundle)
        self.camera: PinholeCamera = self._camera()
        self.build_config: MapBuildConfig = self._build_config()
        self.views: ViewTable = self._view_table()
        self.feature_offsets: np.ndarray = self._array(FEATURE_OFFSETS, "int64", (), len(self.views) + 1)
        self.tiles: TileTable = self._tile_table()
        self.feature_storage = FeatureStorage.from_manifest(
            self.manifest.get(FEATURE_STORAGE), f"{self.path / 'manifest.json'}: {FEATURE_STORAGE}"
        )
        n_features = int(self.feature_offsets[-1])
        self.descriptor_codec: ProductQuantizer | None = None
        # Feature columns are checked here (dtype, shape) and read by FeatureColumns (not mapped).
        self._feature_files: dict[str, Path] = {}
        for name, (dtype, shape) in FEATURE_COLUMNS.items():
            if name == "descriptors" and self.feature_storage.descriptors == "pq":
                continue
            stored = "float16" if name in self.feature_storage.float16 else dtype
            self._array(f"features/{name}", stored, shape, n_features)
            self._feature_files[name] = self.path / f"features/{name}.npy"
        if self.feature_storage.descriptors == "pq":
            m = self.feature_storage.pq_bytes
            self._array(DESCRIPTOR_CODES, "uint8", (m,), n_features)
            self._feature_files["descriptor_codes"] = self.path / f"{DESCRIPTOR_CODES}.npy"
            codebook = self._array(DESCRIPTOR_CODEBOOK, "float32", (256, 128 // m), m)
            try:
                self.descriptor_codec = ProductQuantizer(
                    np.asarray(codebook), f"{self.path / DESCRIPTOR_CODEBOOK}.npy"
                )
            except BovwError as exc:
                raise BundleFormatError(str(exc)) from None
        positions = self._array(PANORAMA_POSITIONS, "float64", (3,), None)
        self.panorama_positions: np.ndarray = positions
        records = bundle.json(PANORAMA_RECORDS)
        if not isinstance(records, list) or len(records) != len(positions):
            raise BundleFormatError(
                f"{self.path / PANORAMA_RECORDS}.json: expected a list of {len(positions)} panorama records"
            )
        self.panorama_ids: list[str] = [str(r.get("id")) if isinstance(r, dict) else "" for r in records]
        self._records_json = records
        self._support_graphs: dict[float, sp.csr_array] = {}
        self._check_consistency()
        self._check_retrieval_members()

    @functools.cached_property
    def bundle_id(self) -> str:
        """Identity of the map's content (:func:`map_content_id`), the same for every copy of the
        bundle: a PoseNet model records the id of the map it was trained on."""
        return map_content_id(self.origin, self.panorama_ids, self.panorama_positions)

    # ------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, verify: Verification = "full") -> MapBundle:
        """Open a map bundle; ``verify`` as :meth:`Bundle.open` (errors name the file at fault)."""
        return cls(Bundle.open(path, verify=verify))

    def _camera(self) -> PinholeCamera:
        try:
            return PinholeCamera.from_dict(self.manifest["camera"], f"{self.path / 'manifest.json'}: camera")
        except KeyError:
            raise BundleFormatError(f"{self.path / 'manifest.json'}: no 'camera'") from None
        except CameraModelError as exc:
            raise BundleFormatError(str(exc)) from None

    def _build_config(self) -> MapBuildConfig:
        source = f"{self.path / 'manifest.json'}: build_config"
        try:
            return MapBuildConfig.model_validate(self.manifest["build_config"])
        except KeyError:
            raise BundleFormatError(f"{source} is missing") from None
        except ValidationError as exc:
            raise BundleFormatError(format_validation_error(exc, source)) from None

    def _array(self, name: str, dtype: str, shape: tuple[int, ...], rows: int | None) -> np.ndarray:
        array = self.bundle.array(name)
        file = self.path / f"{name}.npy"
        if array.dtype != np.dtype(dtype) or array.shape[1:] != shape:
            expected = ", ".join(["rows", *map(str, shape)])
            raise BundleFormatError(f"{file}: expected {dtype} ({expected}), got {array.dtype}{array.shape}")
        if rows is not None and len(array) != rows:
            raise BundleFormatError(f"{file}: {len(array)} rows, expected {rows}")
        return array

    def _view_table(self) -> ViewTable:
        n_views = int(self.manifest.get("counts", {}).get("views", -1))
        arrays = {
            name: self._array(f"views/{name}", dtype, shape, n_views if n_views >= 0 else None)
            for name, (dtype, shape) in VIEW_ARRAYS.items()
        }
        return ViewTable(**arrays)

    def _tile_table(self) -> TileTable:
        tiles = self.manifest.get("tiles", {})
        try:
            size = float(tiles["tile_size_m"])
        except (KeyError, TypeError, ValueError):
            raise BundleFormatError(f"{self.path / 'manifest.json'}: tiles.tile_size_m is missing") from None
        keys = self._array(TILE_KEYS, "int64", (2,), None)
        starts = self._array(TILE_STARTS, "int64", (), len(keys) + 1)
        try:
            table = TileTable.from_arrays(size, np.asarray(keys), np.asarray(starts))
        except BundleFormatError as exc:
            raise BundleFormatError(f"{self.path / TILE_KEYS}.npy: {exc}") from None
        if table.n_rows != len(self.views):
            raise BundleFormatError(
                f"{self.path / TILE_STARTS}.npy: tiles cover {table.n_rows} views, "
                f"the bundle has {len(self.views)}"
            )
        return table

    def _check_consistency(self) -> None:
        offsets = self.feature_offsets
        if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise BundleFormatError(
                f"{self.path / FEATURE_OFFSETS}.npy: offsets must start at 0 and not decrease"
            )
        if len(self.views) and (
            int(self.views.pano_index.min()) < 0 or int(self.views.pano_index.max()) >= self.n_panoramas
        ):
            raise BundleFormatError(
                f"{self.path / 'views/pano_index.npy'}: panorama indices outside [0, {self.n_panoramas})"
            )

    def _check_retrieval_members(self) -> None:
        """A complete map has a vocabulary per bag, the index, co-similarity and topology, and each
        vocabulary has the ``n_words`` the manifest says: checked at open, so ``geoloc map info``
        and the localizers agree on what a complete bundle is."""
        manifest = self.path / "manifest.json"
        vocabularies = self.manifest.get("vocabularies")
        if not isinstance(vocabularies, dict) or not vocabularies:
            raise BundleFormatError(f"{manifest}: 'vocabularies' is missing or empty (incomplete map)")
        required = [f"{INDEX_DIR}/{INDEX_NAME}.json"]
        required += [f"{COSIMILARITY_PREFIX}/{key}.npy" for key in ("indptr", "indices", "data", "shape")]
        required += [f"{TOPOLOGY_PREFIX}/{key}.npy" for key in ("indptr", "indices", "distance_m")]
        for bag, parameters in vocabularies.items():
            stem = f"{VOCABULARY_DIR}/{vocabulary_file_stem(bag)}"
            required += [f"{stem}.centroids.npy", f"{stem}.vocabulary.json"]
            n_words = parameters.get("n_words") if isinstance(parameters, dict) else None
            if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 2:
                raise BundleFormatError(
                    f"{manifest}: vocabularies.{bag}.n_words must be an integer >= 2, got {n_words!r}"
                )
        missing = [name for name in required if name not in self.bundle.manifest["files"]]
        if missing:
            raise BundleFormatError(f"{manifest}: incomplete map, members missing: {', '.join(missing)}")
        for bag, parameters in vocabularies.items():
            stem = f"{VOCABULARY_DIR}/{vocabulary_file_stem(bag)}"
            centroids = self.bundle.array(f"{stem}.centroids")
            stored = self.bundle.json(f"{stem}.vocabulary")
            counts = {len(centroids), stored.get("n_words") if isinstance(stored, dict) else None}
            if counts != {parameters["n_words"]}:
                raise BundleFormatError(
                    f"{self.path / stem}: {len(centroids)} centroids, vocabulary file says "
                    f"{stored.get('n_words') if isinstance(stored, dict) else None}, manifest says "
                    f"n_words = {parameters['n_words']}"
                )

    # ------------------------------------------------------------------------------ sizes
    @property
    def n_views(self) -> int:
        return len(self.views)

    @property
    def n_panoramas(self) -> int:
        return len(self.panorama_positions)

    @property
    def n_features(self) -> int:
        return int(self.feature_offsets[-1])

    @property
    def feature_config(self) -> FeatureConfig:
        """The map side's feature settings (queries use compatible ones: :meth:`query_feature_config`)."""
        return self.build_config.features

    def query_feature_config(self, fast: bool = True) -> FeatureConfig:
        """Feature settings for query frames, compatible with the map's.

        ``fast``: the map's settings with the changes :meth:`FeatureConfig.fast` makes to the
        defaults (SIFT at half scale, fewer features), so MSER and descriptor settings still match
        the map's; otherwise the map's settings unchanged.
        """
        if not fast:
            return self.feature_config
        defaults, fast_defaults = FeatureConfig(), FeatureConfig.fast()
        changes = {
            name: getattr(fast_defaults, name)
            for name in FeatureConfig.model_fields
            if getattr(fast_defaults, name) != getattr(defaults, name)
        }
        return self.feature_config.model_copy(update=changes)

    @functools.cached_property
    def panorama_records(self) -> list[PanoramaRecord]:
        """The panorama-set records the bundle was built from (image paths relative to that set)."""
        source = f"{self.path / (PANORAMA_RECORDS + '.json')}"
        records = []
        for i, data in enumerate(self._records_json):
            try:
                records.append(PanoramaRecord.model_validate(data))
            except ValidationError as exc:
                raise BundleFormatError(format_validation_error(exc, f"{source}[{i}]")) from None
        return records

    def stated_pose_sigma(self) -> tuple[float, float]:
        """``(position σ m per axis, heading σ deg)`` the panoramas state for their own poses: the
        median over the panoramas (0, 0 for a map whose poses are given as exact)."""
        records = self.panorama_records
        if not records:
            return 0.0, 0.0
        position = np.median([r.position_sigma_m or 0.0 for r in records])
        heading = np.median([r.heading_sigma_deg or 0.0 for r in records])
        return float(position), float(heading)

    # ------------------------------------------------------------------------------ features
    def feature_rows(self, view: int) -> slice:
        """Rows of ``view``'s features in every ``features/*`` array."""
        if not 0 <= view < self.n_views:
            raise IndexError(f"view {view} outside [0, {self.n_views})")
        return slice(int(self.feature_offsets[view]), int(self.feature_offsets[view + 1]))

    @functools.cached_property
    def feature_columns(self) -> FeatureColumns:
        """The feature columns, read by positioned reads and counted by tile (opened on first use:
        a bundle not yet read can be pickled)."""
        tile_rows = np.asarray(self.feature_offsets[np.asarray(self.tiles.starts)], dtype=np.int64)
        return FeatureColumns(self._feature_files, tile_rows)

    def features(self, view: int) -> tuple[FeatureSet, np.ndarray]:
        """``(FeatureSet, points_map (N, 3) float32)`` of one view, read from the bundle (arrays the
        caller owns; see the module docstring).

        ``points_map`` are the keypoints' 3D points in the ``map`` frame (NaN where the view has
        no depth, or the keypoint sits on a depth edge).
        """
        rows = self.feature_rows(int(view))
        return self._feature_set([rows]), self._gather("points_map", [rows])

    def prefetch_features(self, tiles: Sequence[int]) -> None:
        """Have the kernel read the feature rows of ``tiles`` ahead of need
        (:meth:`FeatureColumns.prefetch`)."""
        self.feature_columns.prefetch(tiles)

    def _gather(self, name: str, slices: Sequence[slice]) -> np.ndarray:
        """Column ``name`` (as :data:`FEATURE_COLUMNS` types it) of the rows ``slices``, read and
        concatenated; compact storage is decoded (descriptors) or widened (float16)."""
        stored_name = "descriptor_codes" if name == "descriptors" and self.descriptor_codec else name
        columns = self.feature_columns
        if not slices:
            part = columns.read(stored_name, 0, 0)
        elif len(slices) == 1:
            part = columns.read(stored_name, slices[0].start, slices[0].stop)
        else:
            part = np.concatenate([columns.read(stored_name, s.start, s.stop) for s in slices])
        if stored_name == "descriptor_codes":
            assert self.descriptor_codec is not None
            return self.descriptor_codec.decode(part)
        dtype = np.dtype(FEATURE_COLUMNS[name][0])
        return part if part.dtype == dtype else part.astype(dtype)

    def _feature_set(self, slices: Sequence[slice]) -> FeatureSet:
        return FeatureSet(
            keypoints_xy=self._gather("keypoints_xy", slices),
            size=self._gather("size", slices),
            angle=self._gather("angle", slices),
            response=self._gather("response", slices),
            kind=self._gather("kind", slices),
            descriptors=self._gather("descriptors", slices),
            image_size=self.camera.size,
        )

    def points(self, view: int) -> np.ndarray:
        """``view``'s ``points_map`` alone (see :meth:`features`)."""
        return self._gather("points_map", [self.feature_rows(int(view))])

    def words(self, view: int) -> np.ndarray:
        """Word id of each of ``view``'s features, in the vocabulary of the feature's bag (kind)."""
        return self._gather("words", [self.feature_rows(int(view))])

    def words_by_bag(self, view: int) -> dict[str, np.ndarray]:
        """``view``'s words per bag (what :class:`TfIdfIndex` takes)."""
        rows = [self.feature_rows(int(view))]
        kinds, words = self._gather("kind", rows), self._gather("words", rows)
        return {name: words[kinds == feature_kind(name).code] for name in self.bags}

    def features_batch(self, views: Sequence[int] | np.ndarray) -> ViewFeatures:
        """Features of several views concatenated (copies only those views' rows)."""
        ids = np.asarray(views, dtype=np.int64).reshape(-1)
        slices = [self.feature_rows(int(v)) for v in ids]
        counts = np.array([s.stop - s.start for s in slices], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ViewFeatures(
            ids,
            offsets,
            self._feature_set(slices),
            self._gather("points_map", slices),
            self._gather("words", slices),
        )

    # ------------------------------------------------------------------------------ retrieval
    @property
    def bags(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("vocabularies", {}))

    @functools.cached_property
    def vocabularies(self) -> Vocabularies:
        try:
            return Vocabularies.load(self.path / VOCABULARY_DIR, bags=self.bags)
        except BovwError as exc:
            raise BundleFormatError(f"{self.path}: {exc}") from None

    @functools.cached_property
    def index(self) -> TfIdfIndex:
        """The TF-IDF inverted index of the views (memory-mapped)."""
        try:
            index = TfIdfIndex.load(self.path / INDEX_DIR, INDEX_NAME)
        except BovwError as exc:
            raise BundleFormatError(f"{self.path}: {exc}") from None
        if index.n_views != self.n_views:
            raise BundleFormatError(
                f"{self.path / INDEX_DIR}: the index has {index.n_views} views, the bundle {self.n_views}"
            )
        return index

    @property
    def query_config(self) -> QueryConfig:
        """The bundle's default retrieval settings (bag weights, top-K)."""
        return self.build_config.query

    def retriever(
        self,
        config: QueryConfig | None = None,
        quantizer: Literal["flat", "ivf"] | None = None,
        paged_tiles: int | None = None,
    ) -> Retriever:
        """A :class:`Retriever` on the bundle's vocabularies and index.

        ``quantizer``: None assigns query words as the map's were (``vocabulary.*.quantizer`` of
        the build config); ``"ivf"`` is several times faster than the exact ``"flat"`` (nearly
        always the same words; see :mod:`geoloc_ros.bovw.vocabulary`). ``paged_tiles``: score
        queries with a position prior from a :meth:`paged_index` of that many resident tiles
        (bounded memory on a city-scale bundle) instead of the whole memory-mapped index.
        """
        vocabularies = self.vocabularies
        if quantizer is not None:
            vocabularies = vocabularies.with_quantizer(quantizer)
        index = self.index if paged_tiles is None else self.paged_index(paged_tiles)
        return Retriever(vocabularies, index, config if config is not None else self.query_config)

    def paged_index(self, max_tiles: int = 16) -> TilePagedIndex:
        """The index read tile by tile around the position prior, at most ``max_tiles`` tiles resident
        (:class:`~geoloc_ros.mapping.paging.TilePagedIndex`)."""
        index = TilePagedIndex(
            self.path / INDEX_DIR, INDEX_NAME, self.tiles, self.path / "views/position.npy", max_tiles
        )
        if index.n_views != self.n_views:
            raise BundleFormatError(f"{self.path / INDEX_DIR}: the index and the bundle differ in views")
        return index

    @functools.cached_property
    def cosimilarity(self) -> sp.csr_array:
        """Sparse co-similarity between views (top-K per view, or on topological edges: see the manifest)."""
        keys = ("indptr", "indices", "data", "shape")
        arrays = {key: self.bundle.array(f"{COSIMILARITY_PREFIX}/{key}") for key in keys}
        try:
            matrix = cosimilarity_from_arrays(arrays)
        except BovwError as exc:
            raise BundleFormatError(f"{self.path / COSIMILARITY_PREFIX}: {exc}") from None
        if matrix.shape != (self.n_views, self.n_views):
            raise BundleFormatError(
                f"{self.path / COSIMILARITY_PREFIX}: shape {matrix.shape} for {self.n_views} views"
            )
        return matrix

    @functools.cached_property
    def topology(self) -> Topology:
        """View graph: views of the same or of adjacent panoramas, with distances in metres."""
        keys = ("indptr", "indices", "distance_m")
        arrays = {key: self.bundle.array(f"{TOPOLOGY_PREFIX}/{key}") for key in keys}
        try:
            topology = Topology.from_arrays(arrays)
        except BovwError as exc:
            raise BundleFormatError(f"{self.path / TOPOLOGY_PREFIX}: {exc}") from None
        if topology.n_views != self.n_views:
            raise BundleFormatError(
                f"{self.path / TOPOLOGY_PREFIX}: {topology.n_views} views, expected {self.n_views}"
            )
        return topology

    def support_graph(self, distance_scale_m: float | None = None) -> sp.csr_array:
        """Re-ranking weights (:func:`geoloc_ros.bovw.cosimilarity.support_graph`) from the co-similarity
        and the topology; ``distance_scale_m`` defaults to the build's ``topology.rerank``."""
        if distance_scale_m is None:
            distance_scale_m = self.build_config.topology.rerank.distance_scale_m
        scale = float(distance_scale_m)
        if scale not in self._support_graphs:
            self._support_graphs[scale] = support_graph(self.cosimilarity, self.topology, scale)
        return self._support_graphs[scale]

    # ------------------------------------------------------------------------------ geography
    def tile_of(self, xy: npt.ArrayLike) -> tuple[int, int]:
        """Tile coordinates ``(ix, iy)`` of an ENU position (whether or not the bundle has views there)."""
        return self.tiles.tile_of(xy)

    def views_in_tile(self, tile: tuple[int, int]) -> np.ndarray:
        """View indices of tile ``(ix, iy)`` (a contiguous range; empty when the tile has no view)."""
        t = self.tiles.find(tile)
        if t < 0:
            return np.zeros(0, dtype=np.int64)
        return np.arange(self.tiles.starts[t], self.tiles.starts[t + 1], dtype=np.int64)

    def views_near(self, xy: npt.ArrayLike, radius_m: float) -> np.ndarray:
        """Indices (sorted, int64) of the views whose camera centre lies within ``radius_m`` of
        ``xy`` (ENU metres, horizontal distance); reads only the rows of the tiles that meet the disc."""
        centre = np.asarray(xy, dtype=np.float64).reshape(-1)[:2]
        positions = self.views.position
        chosen = [np.zeros(0, dtype=np.int64)]
        for t in self.tiles.tiles_within(centre, radius_m):
            # A tile's rows are contiguous: one slice of the memory-mapped positions per tile.
            start, stop = int(self.tiles.starts[t]), int(self.tiles.starts[t + 1])
            offsets = np.asarray(positions[start:stop, :2]) - centre
            inside = np.einsum("ij,ij->i", offsets, offsets) <= radius_m * radius_m
            chosen.append(np.flatnonzero(inside) + start)
        # Tiles are sorted, and so are the rows of each: the concatenation is sorted.
        return np.concatenate(chosen).astype(np.int64)

    def views_of_panorama(self, pano: int | str) -> np.ndarray:
        """View indices of one panorama (by index or id)."""
        index = self.panorama_ids.index(pano) if isinstance(pano, str) else int(pano)
        return np.flatnonzero(np.asarray(self.views.pano_index) == index).astype(np.int64)

    # ------------------------------------------------------------------------------ images
    @property
    def has_images(self) -> bool:
        return self.bundle.has(IMAGE_BYTES)

    @functools.cached_property
    def image_camera(self) -> PinholeCamera:
        """The camera of the stored view images: :attr:`camera`, or its scaled copy when the images are
        thumbnails (``manifest["images"]`` ``width``/``height``, written by ``geoloc map compact``)."""
        images = self.manifest.get("images")
        if not isinstance(images, dict):
            return self.camera
        width = images.get("width")
        if width is None or width == self.camera.width:
            return self.camera
        if not isinstance(width, int) or not 0 < width <= self.camera.width:
            raise BundleFormatError(
                f"{self.path / 'manifest.json'}: images.width: bad thumbnail width {width!r}"
            )
        camera = self.camera.scaled(width / self.camera.width)
        if images.get("height") != camera.height:
            raise BundleFormatError(
                f"{self.path / 'manifest.json'}: images.height {images.get('height')!r} does not match "
                f"width {width} (expected {camera.height})"
            )
        return camera

    @functools.cached_property
    def _image_offsets(self) -> np.ndarray:
        return self._array(IMAGE_OFFSETS, "int64", (), self.n_views + 1)

    def view_jpeg(self, view: int) -> bytes:
        """The JPEG bytes of ``view``'s image."""
        if not self.has_images:
            raise BundleFormatError(f"{self.path}: no view images (built with images.store: false)")
        if not 0 <= view < self.n_views:
            raise IndexError(f"view {view} outside [0, {self.n_views})")
        offsets = self._image_offsets
        return bytes(self.bundle.array(IMAGE_BYTES)[int(offsets[view]) : int(offsets[view + 1])])

    def view_image(self, view: int) -> np.ndarray:
        """``view``'s image, BGR uint8 ``(height, width, 3)`` of :attr:`image_camera` (decoded from the
        stored JPEG; a thumbnail in a compacted bundle)."""
        data = np.frombuffer(self.view_jpeg(view), dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        camera = self.image_camera
        if image is None or image.shape[:2] != (camera.height, camera.width):
            raise BundleFormatError(f"{self.path / IMAGE_BYTES}.npy: view {view}: bad or wrong-size JPEG")
        return image

    def view_source(self, views: npt.ArrayLike | None = None) -> MapBundleViewSource:
        """The views (all, or ``views``) as a PoseNet training source."""
        return MapBundleViewSource(self, views)

    # ------------------------------------------------------------------------------ reports
    def hole_ratio_table(self) -> list[dict[str, Any]]:
        """The seed's table: per virtual-view offset, positions, invalid positions and null pixels."""
        return list(self.manifest.get("virtual_views", {}).get("table", []))

    def info(self) -> dict[str, Any]:
        """A summary for ``geoloc map info`` (manifest figures; nothing is read beyond it)."""
        m = self.manifest
        return {
            "path": str(self.path),
            "format_version": m.get("format_version"),
            "created_at": m.get("created_at"),
            "producer": m.get("producer"),
            "origin": m.get("origin"),
            "camera": {
                "width": self.camera.width,
                "height": self.camera.height,
                "fx": self.camera.fx,
                "fy": self.camera.fy,
                "cx": self.camera.cx,
                "cy": self.camera.cy,
                "hfov_deg": round(self.camera.hfov_deg, 3),
            },
            "counts": m.get("counts"),
            "vocabularies": {name: p.get("n_words") for name, p in m.get("vocabularies", {}).items()},
            "tiles": m.get("tiles"),
            "cosimilarity": m.get("cosimilarity"),
            "topology": m.get("topology"),
            "virtual_views": m.get("virtual_views"),
            "images": m.get("images"),
            "bytes": self.bundle.total_bytes,
            "build": m.get("build"),
            "map_version": m.get("map_version", 1),
            "feature_storage": self.feature_storage.to_manifest(),
            "refinement": m.get("refinement"),
        }

    def __repr__(self) -> str:
        return (
            f"MapBundle({self.path}, {self.n_panoramas} panoramas, {self.n_views} views, "
            f"{self.n_features} features)"
        )
