"""Undistort and resize raw camera frames to the processing camera model in one remap.

The localizers work on a distortion-free pinhole image whose intrinsics match the map's views
(rectified Street View cut-outs). :class:`Rectifier` caches the ``cv2.remap`` maps for a
(source camera, target camera) pair and rebuilds them only when CameraInfo changes.
"""

from __future__ import annotations

import cv2
import numpy as np

from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.camera.pinhole import PinholeCamera


def processing_camera_for(
    source: PinholeCamera, width: int | None = None, hfov_deg: float | None = None
) -> PinholeCamera:
    """The distortion-free processing model: ``source`` undistorted, optionally resized to ``width``
    (keeping the aspect ratio) and/or re-focused to ``hfov_deg``."""
    out_width = width or source.width
    out_height = round(source.height * out_width / source.width)
    if hfov_deg is not None:
        return PinholeCamera.from_hfov(out_width, out_height, hfov_deg)
    return (
        source.undistorted().scaled(out_width / source.width)
        if out_width != source.width
        else source.undistorted()
    )


class Rectifier:
    """Maps images of ``source`` (possibly distorted) into ``target`` (distortion-free)."""

    def __init__(self, source: PinholeCamera, target: PinholeCamera) -> None:
        if target.is_distorted:
            raise CameraModelError("the processing camera must be distortion-free")
        self.source = source
        self.target = target
        self._identity = source == target
        try:
            self._maps = None if self._identity else source.rectify_maps(target)
        except cv2.error as exc:  # OpenCV refuses the pair (sizes beyond its own limits)
            raise CameraModelError(f"cannot build rectification maps {source} -> {target}: {exc}") from None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if (w, h) != self.source.size:
            raise CameraModelError(
                f"image is {w}x{h} but its camera model is {self.source.width}x{self.source.height}"
            )
        if self._maps is None:
            return image
        map1, map2 = self._maps
        return cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
