"""Image preprocessing shared by training and inference (numpy/OpenCV only, no torch).

The network sees an RGB image of ``InputSpec.width x height`` pixels scaled to [0, 1] and
normalised per channel with the ImageNet mean/std, in NCHW float32. Training and inference call
the same :func:`resize_for_network` and :func:`to_network_tensor`, so both see identical pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.posenet.errors import InferenceError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """Size and normalisation of the network input (stored in the ONNX metadata)."""

    width: int = 224
    height: int = 168
    mean_rgb: tuple[float, float, float] = IMAGENET_MEAN_RGB
    std_rgb: tuple[float, float, float] = IMAGENET_STD_RGB

    def __post_init__(self) -> None:
        if int(self.width) < 16 or int(self.height) < 16:
            raise InferenceError(
                f"network input must be at least 16x16 pixels, got {self.width}x{self.height}"
            )
        if len(self.mean_rgb) != 3 or len(self.std_rgb) != 3 or min(self.std_rgb) <= 0:
            raise InferenceError(
                f"input mean/std must be 3 values with std > 0, got {self.mean_rgb}/{self.std_rgb}"
            )
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "mean_rgb", tuple(float(v) for v in self.mean_rgb))
        object.__setattr__(self, "std_rgb", tuple(float(v) for v in self.std_rgb))


def check_bgr_image(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is a BGR uint8 ``(H, W, 3)`` array, else raise :class:`InferenceError`."""
    if not isinstance(image, np.ndarray):
        raise InferenceError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InferenceError(f"{name} must be uint8 BGR, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InferenceError(f"{name} must have shape (H, W, 3) (BGR), got {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InferenceError(f"{name} is too small: {image.shape[1]}x{image.shape[0]} pixels")
    return image


def resize_for_network(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize a BGR uint8 image to the network size (area averaging when shrinking, as cameras do)."""
    image = check_bgr_image(image_bgr)
    h, w = image.shape[:2]
    if (w, h) == (spec.width, spec.height):
        return image
    shrinking = w >= spec.width and h >= spec.height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (spec.width, spec.height), interpolation=interpolation)


def to_network_tensor(images_bgr: Sequence[np.ndarray] | np.ndarray, spec: InputSpec) -> np.ndarray:
    """Network-size BGR uint8 images -> ``(N, 3, H, W)`` float32, RGB, normalised.

    Each output plane is a lookup of its channel's 256 normalised values
    (:func:`normalisation_table`): the same float32 values as ``(v / 255 - mean) / std`` computed
    per pixel, in one pass instead of five (a fifth of the time, BENCHMARKS.md issue 15).
    """
    batch = np.stack([check_bgr_image(im, f"image {i}") for i, im in enumerate(images_bgr)])
    if batch.shape[1:3] != (spec.height, spec.width):
        raise InferenceError(
            f"images must be {spec.width}x{spec.height} here (resize first), "
            f"got {batch.shape[2]}x{batch.shape[1]}"
        )
    table = normalisation_table(spec)
    out = np.empty((batch.shape[0], 3, spec.height, spec.width), dtype=np.float32)
    for rgb in range(3):
        # uint8 indices are always in range: "clip" skips numpy's bounds buffer.
        np.take(table[rgb], batch[..., 2 - rgb], out=out[:, rgb], mode="clip")
    return out


@lru_cache(maxsize=8)
def normalisation_table(spec: InputSpec) -> np.ndarray:
    """``(3, 256)`` float32: the network value of each uint8 level in the R, G and B channels."""
    levels = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean_rgb, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std_rgb, dtype=np.float32)
    table = (levels[None, :] - mean[:, None]) * inv_std[:, None]
    table.setflags(write=False)
    return table


def network_camera(camera: PinholeCamera, spec: InputSpec) -> PinholeCamera:
    """The (undistorted) camera model of a view of ``camera`` resized to the network input.

    Scales each axis separately (the pixel-centre convention of :meth:`PinholeCamera.scaled`), so
    an aspect ratio different from the input's is handled exactly.
    """
    sx = spec.width / camera.width
    sy = spec.height / camera.height
    return replace(
        camera.undistorted(),
        width=spec.width,
        height=spec.height,
        fx=camera.fx * sx,
        fy=camera.fy * sy,
        cx=(camera.cx + 0.5) * sx - 0.5,
        cy=(camera.cy + 0.5) * sy - 0.5,
    )


class InputRectifier:
    """Maps images of an on-board camera (any size, with distortion) onto the model's camera.

    The model was trained on views of ``model_camera`` resized to ``spec``; an on-board camera with
    other intrinsics or lens distortion is undistorted and resampled to that exact pinhole model in
    one ``cv2.remap``, so the network sees the geometry it was trained on.
    """

    def __init__(self, input_camera: PinholeCamera, model_camera: PinholeCamera, spec: InputSpec) -> None:
        self.input_camera = input_camera
        self.target = network_camera(model_camera, spec)
        self._map_x, self._map_y = input_camera.rectify_maps(self.target)

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        image = check_bgr_image(image_bgr)
        if image.shape[:2] != (self.input_camera.height, self.input_camera.width):
            raise InferenceError(
                f"image is {image.shape[1]}x{image.shape[0]} but the input camera is "
                f"{self.input_camera.width}x{self.input_camera.height}"
            )
        # Shrinking by remap alone aliases: pre-blur in proportion to the scale factor.
        scale = self.input_camera.width / self.target.width
        if scale > 1.5:
            sigma = 0.5 * scale
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
        return cv2.remap(image, self._map_x, self._map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
