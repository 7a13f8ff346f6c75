"""Synthetic images for the bovw tests (deterministic, no shared data needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


def make_textured_image(seed: int, width: int = 480, height: int = 360) -> np.ndarray:
    """A BGR image of random filled ellipses and rectangles on a noisy gradient (blobs for MSER,
    corners and edges for SIFT)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (30 + 30 * xx / width + 20 * yy / height).astype(np.float32)
    image = np.repeat(base[:, :, None], 3, axis=2)
    for _ in range(120):
        colour = tuple(float(c) for c in rng.uniform(110, 255, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(3, 25)), int(rng.integers(3, 25)))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            size = rng.integers(4, 30, 2)
            cv2.rectangle(image, centre, (centre[0] + int(size[0]), centre[1] + int(size[1])), colour, -1)
    image += rng.normal(0, 1.5, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def textured_image() -> np.ndarray:
    return make_textured_image(0)


@pytest.fixture(scope="session")
def make_image():
    """The :func:`make_textured_image` generator, for tests that need several scenes."""
    return make_textured_image
