"""The SIFT feature kind (code 0): RootSIFT keypoints, optionally detected on a downscaled image.

See :mod:`geoloc_ros.bovw.features` for the descriptor space and the keypoint convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from geoloc_ros.bovw.features import (
    FeatureConfig,
    FeatureKind,
    FeatureSet,
    keypoint_arrays,
    quantize_rootsift,
    resize_image,
    rootsift,
    spread_select,
    to_input_pixels,
)
from geoloc_ros.bovw.kinds import DESCRIPTOR_DIM, FeatureKindSpec, register_feature_kind


class SiftExtractor:
    """SIFT keypoints under a :class:`FeatureConfig` (``sift_*``, grid and ``upright`` settings)."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = cfg = config
        detect_count = math.ceil(cfg.sift_max_features * cfg.sift_oversample)
        self._sift = cv2.SIFT.create(
            nfeatures=detect_count,
            nOctaveLayers=cfg.sift_octave_layers,
            contrastThreshold=cfg.sift_contrast_threshold,
            edgeThreshold=cfg.sift_edge_threshold,
            sigma=cfg.sift_sigma,
        )

    def extract(self, grey: np.ndarray, valid: np.ndarray | None) -> FeatureSet:
        """RootSIFT keypoints of a grey image (``valid``: None or a 0/1 uint8 mask of its shape)."""
        cfg = self.config
        height, width = grey.shape
        small, sx, sy = resize_image(grey, cfg.sift_scale, cv2.INTER_AREA)
        small_mask = None
        if valid is not None:
            small_mask, _, _ = resize_image(valid, cfg.sift_scale, cv2.INTER_NEAREST)
        if cfg.upright:
            keypoints = self._sift.detect(small, small_mask)
            keypoints, descriptors = self._describe_upright(small, keypoints)
        else:
            keypoints, descriptors = self._sift.detectAndCompute(small, small_mask)
        if not keypoints:
            return FeatureSet.empty((width, height))
        xy, size, angle, response = keypoint_arrays(keypoints)
        keep = spread_select(
            xy, response, cfg.sift_max_features, small.shape[::-1], (cfg.grid_cols, cfg.grid_rows)
        )
        return FeatureSet(
            keypoints_xy=to_input_pixels(xy[keep], sx, sy).astype(np.float32),
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


SIFT = register_feature_kind(
    FeatureKindSpec(
        name="sift",
        code=FeatureKind.SIFT,
        create=SiftExtractor,
        max_features=lambda config: config.sift_max_features,
        default_words=5000,
        map_words=30_000,
        index_weight=0.7,
        map_weight=0.6,
    )
)
