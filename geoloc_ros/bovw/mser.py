"""The MSER feature kind (code 1): SIFT-described, affine-normalised MSER regions.

Regions are detected on a reduced image (``mser_scale``) and described the classic way
(Mikolajczyk & Schmid 2005): the region's second moments define an ellipse; the ellipse scaled by
``mser_measurement_scale`` is warped affinely onto a circle of radius :data:`MSER_PATCH_RADIUS` in
a square patch taken from a Gaussian pyramid of the input image (so large regions are not
aliased), the patch gets a dominant gradient orientation (unless ``upright``), and OpenCV's SIFT
describes every patch of a mosaic in one call. Descriptors are quantised RootSIFT, like SIFT's
(:mod:`geoloc_ros.bovw.features`). Queries extract MSER only for global re-localization
(``on_demand``).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from geoloc_ros.bovw.errors import DescriptorError
from geoloc_ros.bovw.features import (
    FeatureConfig,
    FeatureKind,
    FeatureSet,
    quantize_rootsift,
    resize_image,
    rootsift,
    spread_select,
    to_input_pixels,
)
from geoloc_ros.bovw.kinds import FeatureKindSpec, register_feature_kind

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


class MserExtractor:
    """MSER regions under a :class:`FeatureConfig` (``mser_*``, grid, ``sift_sigma``, ``upright``)."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = cfg = config
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

    def extract(self, grey: np.ndarray, valid: np.ndarray | None) -> FeatureSet:
        """SIFT-described, affine-normalised MSER regions of a grey image (``valid`` as for SIFT)."""
        cfg = self.config
        height, width = grey.shape
        small, sx, sy = resize_image(grey, cfg.mser_scale, cv2.INTER_AREA)
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
        centre = to_input_pixels(centre, sx, sy)
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


MSER = register_feature_kind(
    FeatureKindSpec(
        name="mser",
        code=FeatureKind.MSER,
        create=MserExtractor,
        max_features=lambda config: config.mser_max_features,
        default_words=2000,
        map_words=8_000,
        index_weight=0.3,
        map_weight=0.4,
        on_demand=True,
    )
)
