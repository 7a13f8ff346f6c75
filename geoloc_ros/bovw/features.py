"""Local features for retrieval and matching: the shared descriptor space and the extractor.

Features come in kinds, registered by name (:mod:`geoloc_ros.bovw.kinds`); ``FeatureConfig.kinds``
chooses which the :class:`FeatureExtractor` runs, in order. The built-in kinds share one
descriptor space (128-d RootSIFT stored as uint8):

* **SIFT** keypoints (OpenCV, :mod:`geoloc_ros.bovw.sift`), optionally detected on a downscaled
  copy of the image (``sift_scale``): OpenCV doubles the image internally before building its
  pyramid, so detecting at scale 0.5 costs a third or less of full resolution and drops only the
  finest-scale features. Keypoints are mapped back to input-image pixels.
* **MSER** regions (:mod:`geoloc_ros.bovw.mser`), detected on a reduced image (``mser_scale``),
  affine-normalised and described with SIFT.

Descriptors are RootSIFT (Arandjelović & Zisserman 2012): each SIFT vector is L1-normalised and
square-rooted, so it has unit L2 norm and Euclidean distance between RootSIFT vectors is the
Hellinger kernel distance of the SIFT vectors. They are stored as ``uint8`` as
``round(rootsift * ROOTSIFT_UINT8_SCALE)`` clipped to 255. Components of a unit vector derived from
clipped SIFT stay below 0.5 in practice, so clipping is rare; the rounding error is at most
``0.5 / 512`` per component, about 0.6 % of the unit norm over 128 components, far below the
distances that separate visual words or matches. Vocabularies, the index and matching all work
in these uint8 units (``descriptors.astype(float32)``); :func:`dequantize_rootsift` recovers
unit-norm vectors.

Keypoint convention (OpenCV's): ``keypoints_xy`` are pixel coordinates of the input image (the
centre of pixel ``(u, v)`` is at ``(u, v)``), ``size`` the feature's diameter in input pixels,
``angle`` degrees in ``[0, 360)`` measured from the image x axis towards the image y axis (down).

An extractor holds OpenCV objects: use one per thread. It pickles (by config) for process pools
and Dask (a kind registered outside geoloc_ros must be registered in the workers too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import cv2
import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from geoloc_ros.bovw.errors import DescriptorError, FeatureInputError, FeatureKindError
from geoloc_ros.bovw.kinds import DEFAULT_FEATURE_KINDS, DESCRIPTOR_DIM, feature_kind
from geoloc_ros.config import StrictModel

logger = logging.getLogger(__name__)

_EPS = 1e-12

ROOTSIFT_UINT8_SCALE = 512.0
"""uint8 descriptor = round(RootSIFT component × this), clipped to 255 (see the module docstring)."""


class FeatureKind(IntEnum):
    """Codes (:attr:`FeatureSet.kind`) of the built-in feature kinds; see :mod:`geoloc_ros.bovw.kinds`."""

    SIFT = 0
    MSER = 1


class FeatureConfig(StrictModel):
    """Settings of :class:`FeatureExtractor`. The map and the queries must use compatible settings.

    Defaults suit map views (offline, richer). :meth:`fast` gives the on-board (query) settings.
    Keep ``mser_scale``, the MSER thresholds, ``mser_measurement_scale`` and ``upright`` the same
    on both sides so the same regions are detected and described alike; ``sift_scale`` and the
    caps may differ (a half-scale query still finds the map's coarser SIFT features).
    """

    sift_max_features: int = Field(1500, ge=0, description="SIFT features kept per image; 0 disables SIFT")
    sift_scale: float = Field(1.0, gt=0.0, le=1.0, description="image scale SIFT is detected at")
    sift_octave_layers: int = Field(3, ge=1, le=8)
    sift_contrast_threshold: float = Field(0.04, gt=0.0)
    sift_edge_threshold: float = Field(10.0, gt=0.0)
    sift_sigma: float = Field(1.6, gt=0.5, description="blur of the base level (> the assumed camera 0.5)")
    sift_oversample: float = Field(
        1.5, ge=1.0, description="keypoints detected per kept one, before the spatial cap chooses"
    )
    grid_cols: int = Field(8, ge=1, description="cells across the image for the spatial cap")
    grid_rows: int = Field(6, ge=1, description="cells down the image for the spatial cap")
    mser_max_features: int = Field(400, ge=0, description="MSER regions kept per image; 0 disables MSER")
    mser_scale: float = Field(0.5, gt=0.0, le=1.0, description="image scale MSER is detected at")
    mser_blur_sigma: float = Field(
        0.0, ge=0.0, description="Gaussian blur before MSER (reduced-image pixels; 0: none) against noise"
    )
    mser_delta: int = Field(3, ge=1)
    mser_min_area: int = Field(20, ge=1, description="smallest region, in pixels of the reduced image")
    mser_max_area_fraction: float = Field(0.05, gt=0.0, le=1.0, description="largest region / image area")
    mser_max_variation: float = Field(0.5, gt=0.0)
    mser_min_diversity: float = Field(
        0.0, ge=0.0, lt=1.0, description="OpenCV's nested-region pruning; 0: ours (see _distinct_regions)"
    )
    mser_max_axis_ratio: float = Field(5.0, ge=1.0, description="regions more elongated are dropped")
    mser_measurement_scale: float = Field(
        3.0, gt=0.0, description="descriptor window = this x the region's moment ellipse"
    )
    upright: bool = Field(
        False, description="orientation 0 for every feature (for level cameras; not rotation invariant)"
    )
    kinds: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FEATURE_KINDS),
        min_length=1,
        description="registered feature kinds to extract (geoloc_ros.bovw.kinds), in this order",
    )

    @model_validator(mode="after")
    def _something_enabled(self) -> FeatureConfig:
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"kinds: {self.kinds} names a kind twice")
        if not self.enabled_kinds():
            counts = ", ".join(f"{name}: {feature_kind(name).max_features(self)}" for name in self.kinds)
            raise ValueError(f"every feature kind keeps 0 features ({counts}): nothing to extract")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_kinds(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Default kinds are left out, so that configs stored in bundles stay as they were before
        # kinds were configurable (and open with older versions).
        data: dict[str, Any] = handler(self)
        if tuple(self.kinds) == DEFAULT_FEATURE_KINDS:
            data.pop("kinds", None)
        return data

    def enabled_kinds(self) -> tuple[str, ...]:
        """The kinds of :attr:`kinds` that keep features (max features > 0), in order."""
        return tuple(name for name in self.kinds if feature_kind(name).max_features(self) > 0)

    @classmethod
    def fast(cls, **overrides: Any) -> FeatureConfig:
        """On-board settings for 640x480 frames: SIFT at half scale, fewer features.

        Compatible with a map built with the defaults (same descriptors, MSER settings and
        orientation handling; the map only has more and finer SIFT features):
        bench/bench_features.py measures the time saved and the retrieval score kept.
        """
        values: dict[str, Any] = {"sift_scale": 0.5, "sift_max_features": 800, "mser_max_features": 200}
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class FeatureSet:
    """Features of one image (arrays of equal length N, see the module docstring for conventions).

    ``response`` is the detector's strength: SIFT's DoG contrast, and for MSER the region's area in
    input-image pixels (the order the spatial cap uses).
    """

    keypoints_xy: np.ndarray  # (N, 2) float32
    size: np.ndarray  # (N,) float32
    angle: np.ndarray  # (N,) float32
    response: np.ndarray  # (N,) float32
    kind: np.ndarray  # (N,) uint8, the codes of the feature kinds (FeatureKindSpec.code)
    descriptors: np.ndarray  # (N, 128) uint8, quantised RootSIFT
    image_size: tuple[int, int]  # (width, height) of the input image

    def __post_init__(self) -> None:
        n = len(self.keypoints_xy)
        expected = {
            "keypoints_xy": ((n, 2), np.float32),
            "size": ((n,), np.float32),
            "angle": ((n,), np.float32),
            "response": ((n,), np.float32),
            "kind": ((n,), np.uint8),
            "descriptors": ((n, DESCRIPTOR_DIM), np.uint8),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                got = f"{value.dtype}{value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
                raise DescriptorError(f"FeatureSet.{name}: expected {np.dtype(dtype)}{shape}, got {got}")

    def __len__(self) -> int:
        return len(self.keypoints_xy)

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> FeatureSet:
        return cls(
            keypoints_xy=np.zeros((0, 2), np.float32),
            size=np.zeros(0, np.float32),
            angle=np.zeros(0, np.float32),
            response=np.zeros(0, np.float32),
            kind=np.zeros(0, np.uint8),
            descriptors=np.zeros((0, DESCRIPTOR_DIM), np.uint8),
            image_size=image_size,
        )

    def subset(self, index: np.ndarray | slice) -> FeatureSet:
        """The features at ``index`` (integer indices or a boolean mask, in that order; a slice gives
        views, not copies)."""
        return FeatureSet(
            keypoints_xy=self.keypoints_xy[index],
            size=self.size[index],
            angle=self.angle[index],
            response=self.response[index],
            kind=self.kind[index],
            descriptors=self.descriptors[index],
            image_size=self.image_size,
        )

    def of_kind(self, kind: int) -> FeatureSet:
        """The features whose :attr:`kind` code is ``kind``."""
        return self.subset(self.kind == kind)

    @classmethod
    def concatenate(cls, parts: list[FeatureSet]) -> FeatureSet:
        """Features of several extractions of one image (all parts must share ``image_size``)."""
        if not parts:
            raise DescriptorError("FeatureSet.concatenate: no parts given")
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise DescriptorError(f"FeatureSet.concatenate: parts have different image sizes {sorted(sizes)}")
        return cls(
            keypoints_xy=np.concatenate([p.keypoints_xy for p in parts]),
            size=np.concatenate([p.size for p in parts]),
            angle=np.concatenate([p.angle for p in parts]),
            response=np.concatenate([p.response for p in parts]),
            kind=np.concatenate([p.kind for p in parts]),
            descriptors=np.concatenate([p.descriptors for p in parts]),
            image_size=parts[0].image_size,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for storage (``image_size`` as an int32 pair); inverse of :meth:`from_arrays`."""
        return {
            "keypoints_xy": self.keypoints_xy,
            "size": self.size,
            "angle": self.angle,
            "response": self.response,
            "kind": self.kind,
            "descriptors": self.descriptors,
            "image_size": np.asarray(self.image_size, dtype=np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FeatureSet:
        try:
            width, height = (int(v) for v in np.asarray(arrays["image_size"]).reshape(2))
            return cls(
                keypoints_xy=np.asarray(arrays["keypoints_xy"]),
                size=np.asarray(arrays["size"]),
                angle=np.asarray(arrays["angle"]),
                response=np.asarray(arrays["response"]),
                kind=np.asarray(arrays["kind"]),
                descriptors=np.asarray(arrays["descriptors"]),
                image_size=(width, height),
            )
        except KeyError as exc:
            raise DescriptorError(f"FeatureSet.from_arrays: missing array {exc.args[0]!r}") from None


def rootsift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT of SIFT descriptors (N, 128): L1-normalise, then square-root; float32, unit L2 norm.

    All-zero rows (never produced by SIFT) stay zero.
    """
    sift = np.asarray(descriptors, dtype=np.float32)
    if sift.ndim != 2 or sift.shape[1] != DESCRIPTOR_DIM:
        raise DescriptorError(f"rootsift: expected (N, {DESCRIPTOR_DIM}) descriptors, got shape {sift.shape}")
    if np.any(sift < 0):
        raise DescriptorError("rootsift: SIFT descriptors must be non-negative")
    l1 = sift.sum(axis=1, keepdims=True)
    return np.sqrt(sift / np.maximum(l1, _EPS))


def quantize_rootsift(root: np.ndarray) -> np.ndarray:
    """uint8 storage of RootSIFT vectors: ``round(root * ROOTSIFT_UINT8_SCALE)`` clipped to 255."""
    return np.clip(np.rint(root * ROOTSIFT_UINT8_SCALE), 0, 255).astype(np.uint8)


def dequantize_rootsift(descriptors: np.ndarray) -> np.ndarray:
    """Approximately unit-norm float32 RootSIFT vectors from uint8 descriptors."""
    if descriptors.dtype != np.uint8:
        raise DescriptorError(f"dequantize_rootsift: expected uint8 descriptors, got {descriptors.dtype}")
    return descriptors.astype(np.float32) / np.float32(ROOTSIFT_UINT8_SCALE)


def spread_select(
    xy: np.ndarray, priority: np.ndarray, max_count: int, image_size: tuple[int, int], grid: tuple[int, int]
) -> np.ndarray:
    """Indices of at most ``max_count`` points spread over a ``grid`` = (cols, rows) of cells.

    Round robin over the cells: every cell's best point (highest ``priority``) first, then every
    cell's second best, and so on; within a round, higher priority first. Textured cells still get
    more points than bland ones, but no cell can take the whole budget.
    """
    n = len(xy)
    if n <= max_count:
        return np.arange(n)
    width, height = image_size
    cols, rows = grid
    cx = np.clip((xy[:, 0] * (cols / width)).astype(np.int64), 0, cols - 1)
    cy = np.clip((xy[:, 1] * (rows / height)).astype(np.int64), 0, rows - 1)
    cell = cy * cols + cx
    by_cell = np.lexsort((-priority, cell))
    sorted_cells = cell[by_cell]
    first_of_cell = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[by_cell] = np.arange(n) - first_of_cell
    order = np.lexsort((-priority, rank))
    return np.sort(order[:max_count])


def as_grey(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise FeatureInputError(f"image: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise FeatureInputError(f"image: expected dtype uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 2:
        grey = image
    else:
        raise FeatureInputError(f"image: expected (H, W) grey or (H, W, 3) BGR, got shape {image.shape}")
    if grey.shape[0] < 16 or grey.shape[1] < 16:
        raise FeatureInputError(f"image: too small for features ({grey.shape[1]}x{grey.shape[0]} px)")
    return np.ascontiguousarray(grey)


def check_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.dtype not in (np.uint8, np.bool_) or mask.shape != shape:
        got = f"{mask.dtype}{mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise FeatureInputError(f"mask: expected uint8 or bool of shape {shape}, got {got}")
    return (mask != 0).astype(np.uint8)


def resize_image(image: np.ndarray, scale: float, interpolation: int) -> tuple[np.ndarray, float, float]:
    """The image at ``scale`` and the actual (sx, sy) factors after rounding the size."""
    if scale == 1.0:
        return image, 1.0, 1.0
    height, width = image.shape[:2]
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return small, new_w / width, new_h / height


def to_input_pixels(xy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel coordinates in a resized image → input image (cv2.resize maps pixel centres so)."""
    out = np.empty_like(xy, dtype=np.float64)
    out[:, 0] = (xy[:, 0] + 0.5) / sx - 0.5
    out[:, 1] = (xy[:, 1] + 0.5) / sy - 0.5
    return out


def keypoint_arrays(keypoints: Sequence[cv2.KeyPoint]) -> tuple[np.ndarray, ...]:
    xy = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
    size = np.array([k.size for k in keypoints], dtype=np.float32)
    angle = np.array([k.angle for k in keypoints], dtype=np.float32)
    response = np.array([k.response for k in keypoints], dtype=np.float32)
    return xy, size, angle, response


class FeatureExtractor:
    """Extracts :class:`FeatureSet` s from BGR or grey uint8 images (see the module docstring).

    Runs the extractor of every enabled kind of ``config.kinds`` (:mod:`geoloc_ros.bovw.kinds`),
    in that order.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()
        self._create_extractors()

    def _create_extractors(self) -> None:
        self._kinds = {name: feature_kind(name).create(self.config) for name in self.config.enabled_kinds()}

    @property
    def kinds(self) -> tuple[str, ...]:
        """Names of the kinds :meth:`extract` produces, in order."""
        return tuple(self._kinds)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = FeatureConfig(**state["config"])
        self._create_extractors()

    def extract(self, image: np.ndarray, mask: np.ndarray | None = None) -> FeatureSet:
        """Features of every enabled kind (SIFT, MSER by default) of a BGR (H, W, 3) or grey uint8 image.

        ``mask`` (H, W), uint8 or bool, non-zero where features may be (e.g. where depth is known).
        """
        grey = as_grey(image)
        valid = check_mask(mask, grey.shape)
        return FeatureSet.concatenate([extractor.extract(grey, valid) for extractor in self._kinds.values()])

    def extract_kind(self, name: str, image: np.ndarray, mask: np.ndarray | None = None) -> FeatureSet:
        """Features of one enabled kind only (a stage of :meth:`extract`, public for per-stage timing)."""
        if name not in self._kinds:
            raise FeatureKindError(f"feature kind {name!r} is not enabled; enabled: {list(self._kinds)}")
        grey = as_grey(image)
        return self._kinds[name].extract(grey, check_mask(mask, grey.shape))


# The built-in kinds register themselves (at the end: they use this module's names).
from geoloc_ros.bovw import mser as _mser  # noqa: E402, F401
from geoloc_ros.bovw import sift as _sift  # noqa: E402, F401
