"""Sanity checks a frame must pass before a localizer spends time on it."""

from __future__ import annotations

import numpy as np

from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.camera.pinhole import PinholeCamera

# A frame this dark and this flat carries no features (lens cap, tunnel blackout, dead sensor).
BLACK_MEAN_LEVEL = 3.0
BLACK_STD_LEVEL = 1.5


class BadFrameError(CameraModelError):
    """A frame is empty, black, or does not match its camera model; the message says which."""


def check_frame(image: np.ndarray, camera: PinholeCamera | None = None) -> None:
    if image is None or image.size == 0:
        raise BadFrameError("frame is empty")
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise BadFrameError(f"frame must be a uint8 grey or BGR image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if camera is not None and (w, h) != camera.size:
        raise BadFrameError(f"frame is {w}x{h} but camera_info says {camera.width}x{camera.height}")
    small = image[:: max(1, h // 60), :: max(1, w // 80)]
    if float(small.mean()) < BLACK_MEAN_LEVEL and float(small.std()) < BLACK_STD_LEVEL:
        raise BadFrameError("frame is black (no usable content)")
