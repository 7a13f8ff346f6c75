"""The ``png_mm`` depth format: an equirectangular single-channel 16-bit PNG in millimetres, 0 = unknown."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from geoloc_ros.gis.errors import PanoramaSetError

DEPTH_PNG_SCALE = 1000.0  # depth PNG units per metre (millimetres)
_MAX_UNITS = 65535


def load_depth(path: Path, what: str, width: int | None = None) -> np.ndarray:
    """The PNG's range map in metres (float32, 0 = unknown) at its own size; ``width`` is ignored."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise PanoramaSetError(f"{path}: cannot decode depth PNG of {what}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise PanoramaSetError(
            f"{path}: depth must be a single-channel 16-bit PNG, got {raw.dtype} {raw.shape}"
        )
    if raw.shape[1] != 2 * raw.shape[0]:
        raise PanoramaSetError(f"{path}: depth must be 2:1, got {raw.shape[1]}x{raw.shape[0]}")
    return raw.astype(np.float32) / DEPTH_PNG_SCALE


def encode_depth_png(depth_m: np.ndarray) -> bytes:
    """Range image (metres, 0 = unknown) -> 16-bit PNG bytes in millimetres.

    Ranges beyond 65.535 m (what 16-bit millimetres can hold) and non-finite values are stored as 0,
    "unknown", never saturated: a saturated value would be a wrong depth.
    """
    metres = np.asarray(depth_m, dtype=np.float64)
    mm = np.round(np.where(np.isfinite(metres) & (metres > 0), metres, 0.0) * DEPTH_PNG_SCALE)
    mm[mm > _MAX_UNITS] = 0
    ok, buf = cv2.imencode(".png", mm.astype(np.uint16))
    if not ok:
        raise PanoramaSetError("failed to encode depth PNG")
    return buf.tobytes()
