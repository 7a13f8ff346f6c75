"""Frames from a video file or an image folder, for users without a camera driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from geoloc_ros.camera.errors import CameraModelError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class FrameSourceError(CameraModelError):
    """A video file or image folder cannot be read; the message names it."""


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FrameSourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def iter_frames(path: str | Path, loop: bool = False) -> Iterator[np.ndarray]:
    """BGR frames of a video file or of the images of a folder (sorted by name).

    Unreadable images in a folder are skipped with an error only when none can be read.
    """
    source = Path(path)
    if not source.exists():
        raise FrameSourceError(f"{source}: no such video file or image folder")
    while True:
        produced = 0
        if source.is_dir():
            for file in list_images(source):
                image = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if image is not None:
                    produced += 1
                    yield image
        else:
            capture = cv2.VideoCapture(str(source))
            if not capture.isOpened():
                raise FrameSourceError(f"{source}: cannot open as a video")
            try:
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    produced += 1
                    yield frame
            finally:
                capture.release()
        if produced == 0:
            raise FrameSourceError(f"{source}: no decodable frames")
        if not loop:
            return
