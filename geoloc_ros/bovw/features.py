"""Local features for retrieval and matching: RootSIFT keypoints and SIFT-described MSER regions.

Two kinds of features share one descriptor space (128-d RootSIFT stored as uint8):

* **SIFT** keypoints (OpenCV), optionally detected on a downscaled copy of the image
  (``sift_scale``): OpenCV doubles the image internally before building its pyramid, so detecting
  at scale 0.5 costs a third or less of full resolution and drops only the finest-scale features.
  Keypoints are mapped back to input-image pixels.
* **MSER** regions (detected on a reduced image, ``mser_scale``), described the classic way
  (Mikolajczyk & Schmid 2005): the region's second moments define an ellipse; the ellipse scaled
  by ``mser_measurement_scale`` is warped affinely onto a circle of radius
  :data:`MSER_PATCH_RADIUS` in a square patch taken from a Gaussian pyramid of the input image (so
  large regions are not aliased), the patch gets a dominant gradient orientation (unless
  ``upright``), and OpenCV's SIFT describes every patch of a mosaic in one call.

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
and Dask.

**Why one module of ~700 lines.** SIFT and MSER extraction share the RootSIFT descriptor space,
the quantisation and the spatial selection; the MSER affine-patch description is most of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import cv2
import numpy as np
from pydantic import Field, model_validator

from geoloc_ros.bovw.errors import DescriptorError, FeatureInputError
from geoloc_ros.config import StrictModel

logger = logging.getLogger(__name__)

ROOTSIFT_UINT8_SCALE = 512.0
"""uint8 descriptor = round(RootSIFT component × this), clipped to 255 (see the module docstring)."""

DESCRIPTOR_DIM = 128

MSER_PATCH_RADIUS = 12
"""Radius, in patch pixels, of the circle the measurement ellipse of an MSER region is mapped to."""

# OpenCV's SIFT descriptor square has side 6 x KeyPoint.size: size R/3 makes it span the circle's
# bounding square. Patches are sampled already rotated to their orientation and described at angle
# 0; OpenCV then reads pixels up to 1.25 R from the centre (its 4x4 bins plus half a bin of
# interpolation), so 36 px cells (31 px support plus margins for its blur) keep neighbouring
# patches of the mosaic out of each other's descriptors.
_MSER_KEYPOINT_SIZE = 2.0 * MSER_PATCH_RADIUS / 6.0
_DESCRIPTOR_CELL = 36
# The orientation histogram reads gradients inside radius R.
_ORIENTATION_CELL = 2 * MSER_PATCH_RADIUS + 4
_PATCH_SIFT_SIGMA = 0.5
_ORIENTATION_BINS = 36
# MSER returns every stable level of a blob with soft edges (nested regions a few % apart); we
# keep one per area bin of this ratio instead of OpenCV's min_diversity pruning, which (OpenCV 5)
# drops such blobs entirely.
_DUPLICATE_AREA_RATIO = 1.5
_EPS = 1e-12


class FeatureKind(IntEnum):
    """Value of :attr:`FeatureSet.kind` for each feature."""

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

    @model_validator(mode="after")
    def _something_enabled(self) -> FeatureConfig:
        if self.sift_max_features == 0 and self.mser_max_features == 0:
            raise ValueError("sift_max_features and mser_max_features are both 0: nothing to extract")
        return self

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
    kind: np.ndarray  # (N,) uint8, FeatureKind values
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

    def subset(self, index: np.ndarray) -> FeatureSet:
        """The features at ``index`` (integer indices or a boolean mask), in that order."""
        return FeatureSet(
            keypoints_xy=self.keypoints_xy[index],
            size=self.size[index],
            angle=self.angle[index],
            response=self.response[index],
            kind=self.kind[index],
            descriptors=self.descriptors[index],
            image_size=self.image_size,
        )

    def of_kind(self, kind: FeatureKind) -> FeatureSet:
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


def _as_grey(image: np.ndarray) -> np.ndarray:
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


def _check_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.dtype not in (np.uint8, np.bool_) or mask.shape != shape:
        got = f"{mask.dtype}{mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise FeatureInputError(f"mask: expected uint8 or bool of shape {shape}, got {got}")
    return (mask != 0).astype(np.uint8)


def _resize(image: np.ndarray, scale: float, interpolation: int) -> tuple[np.ndarray, float, float]:
    """The image at ``scale`` and the actual (sx, sy) factors after rounding the size."""
    if scale == 1.0:
        return image, 1.0, 1.0
    height, width = image.shape[:2]
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return small, new_w / width, new_h / height


def _to_input_pixels(xy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel coordinates in a resized image → input image (cv2.resize maps pixel centres so)."""
    out = np.empty_like(xy, dtype=np.float64)
    out[:, 0] = (xy[:, 0] + 0.5) / sx - 0.5
    out[:, 1] = (xy[:, 1] + 0.5) / sy - 0.5
    return out


def _keypoint_arrays(keypoints: Sequence[cv2.KeyPoint]) -> tuple[np.ndarray, ...]:
    xy = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
    size = np.array([k.size for k in keypoints], dtype=np.float32)
    angle = np.array([k.angle for k in keypoints], dtype=np.float32)
    response = np.array([k.response for k in keypoints], dtype=np.float32)
    return xy, size, angle, response


class FeatureExtractor:
    """Extracts :class:`FeatureSet` s from BGR or grey uint8 images (see the module docstring)."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()
        self._create_detectors()

    def _create_detectors(self) -> None:
        cfg = self.config
        detect_count = math.ceil(cfg.sift_max_features * cfg.sift_oversample)
        self._sift = cv2.SIFT.create(
            nfeatures=detect_count,
            nOctaveLayers=cfg.sift_octave_layers,
            contrastThreshold=cfg.sift_contrast_threshold,
            edgeThreshold=cfg.sift_edge_threshold,
            sigma=cfg.sift_sigma,
        )
        # Describes MSER patches only (one octave is built for keypoints of octave 0). The mosaic
        # is blurred to SIFT's base level by _describe_patches; OpenCV's own initial blur is then
        # made negligible (sigma 0.5, the assumed camera blur), which halves its cost: the
        # pyramid layers it builds but never reads become small-kernel blurs.
        self._patch_sift = cv2.SIFT.create(nOctaveLayers=2, sigma=_PATCH_SIFT_SIGMA)
        self._mser = cv2.MSER.create(
            delta=cfg.mser_delta,
            min_area=cfg.mser_min_area,
            max_variation=cfg.mser_max_variation,
            min_diversity=cfg.mser_min_diversity,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = FeatureConfig(**state["config"])
        self._create_detectors()

    def extract(self, image: np.ndarray, mask: np.ndarray | None = None) -> FeatureSet:
        """SIFT then MSER features of a BGR (H, W, 3) or grey (H, W) uint8 image.

        ``mask`` (H, W), uint8 or bool, non-zero where features may be (e.g. where depth is known).
        """
        grey = _as_grey(image)
        valid = _check_mask(mask, grey.shape)
        parts = []
        if self.config.sift_max_features > 0:
            parts.append(self.extract_sift(grey, valid))
        if self.config.mser_max_features > 0:
            parts.append(self.extract_mser(grey, valid))
        return FeatureSet.concatenate(parts)

    def extract_sift(self, image: np.ndarray, mask: np.ndarray | None = None) -> FeatureSet:
        """RootSIFT keypoints only (a stage of :meth:`extract`, public for per-stage timing)."""
        cfg = self.config
        grey = _as_grey(image)
        valid = _check_mask(mask, grey.shape)
        height, width = grey.shape
        small, sx, sy = _resize(grey, cfg.sift_scale, cv2.INTER_AREA)
        small_mask = None
        if valid is not None:
            small_mask, _, _ = _resize(valid, cfg.sift_scale, cv2.INTER_NEAREST)
        if cfg.upright:
            keypoints = self._sift.detect(small, small_mask)
            keypoints, descriptors = self._describe_upright(small, keypoints)
        else:
            keypoints, descriptors = self._sift.detectAndCompute(small, small_mask)
        if not keypoints:
            return FeatureSet.empty((width, height))
        xy, size, angle, response = _keypoint_arrays(keypoints)
        keep = spread_select(
            xy, response, cfg.sift_max_features, small.shape[::-1], (cfg.grid_cols, cfg.grid_rows)
        )
        return FeatureSet(
            keypoints_xy=_to_input_pixels(xy[keep], sx, sy).astype(np.float32),
            size=(size[keep] / math.sqrt(sx * sy)).astype(np.float32),
            angle=angle[keep],
            response=response[keep],
            kind=np.full(len(keep), FeatureKind.SIFT, dtype=np.uint8),
            descriptors=quantize_rootsift(rootsift(descriptors[keep])),
            image_size=(width, height),
        )

    def _describe_upright(
        self, image: np.ndarray, keypoints: Sequence[cv2.KeyPoint]
    ) -> tuple[list[cv2.KeyPoint], np.ndarray]:
        """Descriptors at orientation 0, one per location (SIFT repeats a point per orientation peak)."""
        seen: set[tuple[float, float, float]] = set()
        upright = []
        for kp in keypoints:
            key = (round(kp.pt[0], 2), round(kp.pt[1], 2), round(kp.size, 2))
            if key in seen:
                continue
            seen.add(key)
            kp.angle = 0.0
            upright.append(kp)
        if not upright:
            return [], np.zeros((0, DESCRIPTOR_DIM), np.float32)
        described, descriptors = self._sift.compute(image, upright)
        return list(described), descriptors

    def extract_mser(self, image: np.ndarray, mask: np.ndarray | None = None) -> FeatureSet:
        """SIFT-described, affine-normalised MSER regions only (a stage of :meth:`extract`)."""
        cfg = self.config
        grey = _as_grey(image)
        valid = _check_mask(mask, grey.shape)
        height, width = grey.shape
        small, sx, sy = _resize(grey, cfg.mser_scale, cv2.INTER_AREA)
        if cfg.mser_blur_sigma > 0:
            small = cv2.GaussianBlur(small, (0, 0), cfg.mser_blur_sigma)
        self._mser.setMaxArea(max(cfg.mser_min_area + 1, int(cfg.mser_max_area_fraction * small.size)))
        regions, region_boxes = self._mser.detectRegions(small)
        if not regions:
            return FeatureSet.empty((width, height))
        grid = (cfg.grid_cols, cfg.grid_rows)
        # Merge nested duplicates and pre-cap on the bounding boxes, so that moments (which read
        # every pixel of every region) are computed for a few hundred regions only.
        boxes = np.asarray(region_boxes, dtype=np.float64).reshape(-1, 4)
        box_centre = boxes[:, :2] + (boxes[:, 2:] - 1.0) / 2.0
        box_area = np.fromiter((len(r) for r in regions), dtype=np.float64, count=len(regions))
        candidates = _distinct_regions(box_centre, box_area)
        pre_cap = 2 * cfg.mser_max_features
        candidates = candidates[
            spread_select(box_centre[candidates], box_area[candidates], pre_cap, small.shape[::-1], grid)
        ]
        centre, cov, area = _region_moments([regions[i] for i in candidates])
        # Ellipse in input-image pixels.
        centre = _to_input_pixels(centre, sx, sy)
        scale_xy = np.array([1.0 / sx, 1.0 / sy])
        cov = cov * scale_xy[None, :, None] * scale_xy[None, None, :]
        area = area / (sx * sy)
        eigval, eigvec = np.linalg.eigh(cov)
        eigval = np.maximum(eigval, _EPS)
        keep = np.sqrt(eigval[:, 1] / eigval[:, 0]) <= cfg.mser_max_axis_ratio
        keep &= (centre[:, 0] >= 0) & (centre[:, 0] <= width - 1)
        keep &= (centre[:, 1] >= 0) & (centre[:, 1] <= height - 1)
        if valid is not None:
            cu = np.clip(np.rint(centre[:, 0]).astype(np.int64), 0, width - 1)
            cv_ = np.clip(np.rint(centre[:, 1]).astype(np.int64), 0, height - 1)
            keep &= valid[cv_, cu] != 0
        keep_idx = np.flatnonzero(keep)
        chosen = spread_select(centre[keep_idx], area[keep_idx], cfg.mser_max_features, (width, height), grid)
        keep_idx = keep_idx[chosen]
        if len(keep_idx) == 0:
            return FeatureSet.empty((width, height))
        centre, area, eigval, eigvec = centre[keep_idx], area[keep_idx], eigval[keep_idx], eigvec[keep_idx]
        # Σ^{1/2} (symmetric): maps the unit circle to the 1-sigma ellipse without adding a rotation.
        sqrt_cov = np.einsum("nij,nj,nkj->nik", eigvec, np.sqrt(eigval), eigvec)
        # A filled ellipse with semi-axes a, b has variances a²/4, b²/4: the region ellipse is 2 Σ^{1/2}.
        patch_to_image = sqrt_cov * (2.0 * cfg.mser_measurement_scale / MSER_PATCH_RADIUS)
        pyramid = _gaussian_pyramid(grey, patch_to_image)
        if cfg.upright:
            angles = np.zeros(len(centre), dtype=np.float32)
        else:
            angles = _dominant_orientations(_warp_patches(pyramid, centre, patch_to_image, _ORIENTATION_CELL))
        # Rotating the sampling grid by the orientation lets OpenCV describe every patch at angle 0,
        # which needs a smaller support (its rotated square) than describing an unrotated patch.
        theta = np.radians(angles.astype(np.float64))
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        rotation = np.stack([np.stack([cos_t, -sin_t], axis=-1), np.stack([sin_t, cos_t], axis=-1)], axis=-2)
        patches = _warp_patches(pyramid, centre, patch_to_image @ rotation, _DESCRIPTOR_CELL)
        descriptors = self._describe_patches(patches)
        # Image-space size: the diameter of a circle with the measurement ellipse's area.
        size = 4.0 * cfg.mser_measurement_scale * np.sqrt(np.sqrt(eigval[:, 0] * eigval[:, 1]))
        return FeatureSet(
            keypoints_xy=centre.astype(np.float32),
            size=size.astype(np.float32),
            angle=angles,
            response=area.astype(np.float32),
            kind=np.full(len(centre), FeatureKind.MSER, dtype=np.uint8),
            descriptors=quantize_rootsift(rootsift(descriptors)),
            image_size=(width, height),
        )

    def _describe_patches(self, patches: np.ndarray) -> np.ndarray:
        """SIFT descriptors (angle 0) of the patch centres, computed on a mosaic of patches in one call."""
        n, cell = len(patches), patches.shape[1]
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        padded = np.zeros((rows * cols, cell, cell), dtype=np.uint8)
        padded[:n] = patches
        mosaic = np.ascontiguousarray(padded.reshape(rows, cols, cell, cell).transpose(0, 2, 1, 3))
        mosaic = mosaic.reshape(rows * cell, cols * cell)
        half = (cell - 1) / 2.0
        keypoints = [
            cv2.KeyPoint(
                x=float((i % cols) * cell + half),
                y=float((i // cols) * cell + half),
                size=_MSER_KEYPOINT_SIZE,
                angle=0.0,
                response=0.0,
                octave=0,
            )
            for i in range(n)
        ]
        base_blur = math.sqrt(self.config.sift_sigma**2 - _PATCH_SIFT_SIGMA**2)
        mosaic = cv2.GaussianBlur(mosaic, (0, 0), base_blur)
        described, descriptors = self._patch_sift.compute(mosaic, keypoints)
        if descriptors is None or len(described) != n:
            got = 0 if descriptors is None else len(described)
            raise DescriptorError(f"MSER patch description returned {got} of {n} descriptors")
        return descriptors


def _region_moments(regions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (n, 2), covariance (n, 2, 2) and area (n,) of MSER pixel lists, vectorised."""
    lengths = np.fromiter((len(r) for r in regions), dtype=np.int64, count=len(regions))
    points = np.concatenate(regions).astype(np.float64)
    labels = np.repeat(np.arange(len(regions)), lengths)
    area = lengths.astype(np.float64)
    x, y = points[:, 0], points[:, 1]
    mx = np.bincount(labels, x) / area
    my = np.bincount(labels, y) / area
    # Centred products per pixel (better conditioned than E[x²] - E[x]²); +1/12 is a pixel's own
    # extent, so one-pixel-wide regions keep a positive variance.
    dx, dy = x - mx[labels], y - my[labels]
    cxx = np.bincount(labels, dx * dx) / area + 1.0 / 12.0
    cyy = np.bincount(labels, dy * dy) / area + 1.0 / 12.0
    cxy = np.bincount(labels, dx * dy) / area
    cov = np.stack([np.stack([cxx, cxy], axis=-1), np.stack([cxy, cyy], axis=-1)], axis=-2)
    return np.stack([mx, my], axis=1), cov, area


def _distinct_regions(centre: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Indices of regions left after merging near-duplicates (MSER nests many similar regions).

    Two regions are duplicates when their areas fall in the same bin (bins grow by a factor
    :data:`_DUPLICATE_AREA_RATIO`) and their centres in the same cell of a grid whose pitch is a
    quarter of the region's diameter. The first of each group (OpenCV's order) is kept.
    """
    if len(area) == 0:
        return np.zeros(0, dtype=np.int64)
    area_bin = np.floor(np.log(area) / math.log(_DUPLICATE_AREA_RATIO))
    pitch = np.maximum(1.0, 0.25 * np.sqrt(_DUPLICATE_AREA_RATIO**area_bin))
    keys = np.stack(
        [area_bin, np.floor(centre[:, 0] / pitch), np.floor(centre[:, 1] / pitch)], axis=1
    ).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)


def _pyramid_levels(patch_to_image: np.ndarray) -> np.ndarray:
    """Pyramid level per patch where one patch pixel covers one to two level pixels (no aliasing)."""
    magnification = np.sqrt(np.abs(np.linalg.det(patch_to_image)))
    return np.floor(np.log2(np.maximum(magnification, 1.0))).astype(np.int64)


def _gaussian_pyramid(grey: np.ndarray, patch_to_image: np.ndarray) -> list[np.ndarray]:
    """The image and as many cv2.pyrDown levels as the largest patch needs."""
    needed = int(_pyramid_levels(patch_to_image).max(initial=0))
    pyramid = [grey]
    while len(pyramid) <= needed and min(pyramid[-1].shape) >= 2 * _DESCRIPTOR_CELL:
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


def _warp_patches(
    pyramid: list[np.ndarray], centre: np.ndarray, patch_to_image: np.ndarray, cell: int
) -> np.ndarray:
    """(n, cell, cell) uint8 patches: pixel p samples the image at centre + A (p - patch centre).

    Each patch is sampled from the pyramid level of :func:`_pyramid_levels`, so large regions are
    low-pass filtered before they are shrunk. One cv2.remap per level samples all its patches.
    """
    level = np.minimum(_pyramid_levels(patch_to_image), len(pyramid) - 1)
    offsets = np.arange(cell, dtype=np.float32) - (cell - 1) / 2.0
    grid_x = np.tile(offsets, cell)[None, :]  # (1, cell²), row-major over the patch
    grid_y = np.repeat(offsets, cell)[None, :]
    patches = np.empty((len(centre), cell, cell), dtype=np.uint8)
    for lvl in np.unique(level):
        members = np.flatnonzero(level == lvl)
        factor = 2.0**lvl
        a = (patch_to_image[members] / factor).astype(np.float32)
        c = ((centre[members] + 0.5) / factor - 0.5).astype(np.float32)
        # Level-pixel coordinates of every patch pixel, (m, cell²) each.
        map_x = a[:, 0, 0, None] * grid_x + a[:, 0, 1, None] * grid_y + c[:, 0, None]
        map_y = a[:, 1, 0, None] * grid_x + a[:, 1, 1, None] * grid_y + c[:, 1, None]
        shape = (len(members) * cell, cell)
        sampled = cv2.remap(
            pyramid[lvl],
            map_x.reshape(shape),
            map_y.reshape(shape),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        patches[members] = sampled.reshape(len(members), cell, cell)
    return patches


def _dominant_orientations(patches: np.ndarray) -> np.ndarray:
    """Dominant gradient orientation (OpenCV degrees) inside each patch's measurement circle.

    A 36-bin histogram of gradient directions weighted by magnitude and a Gaussian window
    (sigma = R/2), smoothed circularly, peak refined by a parabola: SIFT's orientation assignment
    on the normalised patch.
    """
    n, cell = len(patches), patches.shape[1]
    stack = cv2.GaussianBlur(patches.reshape(n * cell, cell), (0, 0), 1.0).astype(np.float32)
    # Central differences; rows at cell borders mix neighbouring patches but lie outside the window.
    gx = cv2.Sobel(stack, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(stack, cv2.CV_32F, 0, 1, ksize=1)
    magnitude, theta = cv2.cartToPolar(gx, gy)  # theta in [0, 2 pi), from x towards y (down)
    coords = np.arange(cell) - (cell - 1) / 2.0
    r2 = coords[None, :] ** 2 + coords[:, None] ** 2
    window = np.exp(-r2 / (2.0 * (MSER_PATCH_RADIUS / 2.0) ** 2))
    inside = r2 <= MSER_PATCH_RADIUS**2
    weight = (magnitude.reshape(n, cell, cell) * window.astype(np.float32))[:, inside]
    bins = (theta.reshape(n, cell, cell)[:, inside] * (_ORIENTATION_BINS / (2 * math.pi))).astype(np.int64)
    bins %= _ORIENTATION_BINS
    flat = (np.arange(n)[:, None] * _ORIENTATION_BINS + bins).ravel()
    hist = np.bincount(flat, weight.ravel(), minlength=n * _ORIENTATION_BINS).reshape(n, _ORIENTATION_BINS)
    kernel = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    hist = sum(k * np.roll(hist, shift, axis=1) for k, shift in zip(kernel, range(-2, 3), strict=True))
    peak = np.argmax(hist, axis=1)
    rows = np.arange(n)
    left = hist[rows, (peak - 1) % _ORIENTATION_BINS]
    centre = hist[rows, peak]
    right = hist[rows, (peak + 1) % _ORIENTATION_BINS]
    denom = left - 2.0 * centre + right
    offset = np.where(np.abs(denom) > _EPS, 0.5 * (left - right) / np.where(denom == 0, 1.0, denom), 0.0)
    theta_peak = (peak + 0.5 + offset) * (360.0 / _ORIENTATION_BINS)
    return np.mod(theta_peak, 360.0).astype(np.float32)
