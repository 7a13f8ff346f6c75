"""Training augmentation for the nuisances of a drive (numpy/OpenCV, torch-free, seeded).

Geometric changes keep the pose target exact: the camera is rotated about its own centre by a
small yaw/pitch/roll, which for a pinhole camera is the homography ``K' R^T K^-1`` (no parallax,
so the image is exactly what the rotated camera sees, up to the border), and the target pose is
rotated by the same ``R``. A zoom (focal-length mismatch between the drive camera and the views)
and a small radial-distortion residue are lens effects and leave the pose unchanged. No crop
shifts: a shifted crop *is* a small rotation, which the homography does exactly.

Photometric changes: exposure, gamma, contrast, saturation, colour temperature, an illumination
ramp (cast shadows, vignetting), occluding boxes (vehicles, poles, pedestrians), Gaussian and
motion blur, signal-dependent noise and JPEG artefacts.

Pixel sizes (blur, motion length) refer to the image being augmented, normally the network-size
image (224x168 by default).
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field, model_validator

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel
from geoloc_ros.geometry.frames import R_BODY_OPTICAL
from geoloc_ros.geometry.pose import Pose3D, rotation_from_ypr
from geoloc_ros.posenet.preprocess import check_bgr_image

Range = tuple[float, float]


class AugmentConfig(StrictModel):
    """Ranges and probabilities of every augmentation; ``enabled: false`` turns all off."""

    enabled: bool = True
    # Camera rotation about its own axes, uniform in +-value (degrees); the target follows.
    yaw_deg: float = Field(5.0, ge=0.0, le=20.0)
    pitch_deg: float = Field(2.0, ge=0.0, le=10.0)
    roll_deg: float = Field(2.0, ge=0.0, le=10.0)
    # Zoom factor (focal length), uniform in the range; pose unchanged. Keep it narrow: zooming
    # looks like moving forward.
    scale_range: Range = (0.97, 1.03)
    # Radial distortion residue k1, uniform in +-value, applied with this probability.
    distortion_k1: float = Field(0.03, ge=0.0, le=0.2)
    distortion_probability: float = Field(0.3, ge=0.0, le=1.0)
    # Photometric (multiplicative gain, gamma exponent, contrast and saturation factors).
    exposure_range: Range = (0.55, 1.6)
    gamma_range: Range = (0.75, 1.35)
    contrast_range: Range = (0.7, 1.3)
    saturation_range: Range = (0.5, 1.4)
    # Red/blue gain shift in +-value (warm/cold light), plus a third of it as a green tint.
    colour_temperature: float = Field(0.15, ge=0.0, le=0.5)
    # Linear illumination ramp across the image, amplitude in +-value.
    illumination_gradient: float = Field(0.35, ge=0.0, le=0.9)
    gradient_probability: float = Field(0.5, ge=0.0, le=1.0)
    # Occluders: up to max_occluders boxes (vehicle-like low wide boxes, pole-like tall thin ones).
    occluder_probability: float = Field(0.4, ge=0.0, le=1.0)
    max_occluders: int = Field(3, ge=1, le=10)
    max_occluded_fraction: float = Field(0.25, gt=0.0, le=0.6)
    # Blur (Gaussian sigma in pixels) and motion blur (line length in pixels).
    blur_probability: float = Field(0.3, ge=0.0, le=1.0)
    blur_sigma_max: float = Field(1.2, ge=0.0, le=5.0)
    motion_blur_probability: float = Field(0.3, ge=0.0, le=1.0)
    motion_blur_max_px: float = Field(6.0, ge=2.0, le=30.0)
    # Sensor noise: standard deviation in grey levels at full brightness (less in the dark).
    noise_probability: float = Field(0.5, ge=0.0, le=1.0)
    noise_std_max: float = Field(6.0, ge=0.0, le=40.0)
    # JPEG re-compression (drive bags often carry CompressedImage).
    jpeg_probability: float = Field(0.3, ge=0.0, le=1.0)
    jpeg_quality_range: tuple[int, int] = (35, 90)

    @classmethod
    def only(cls, **fields: object) -> AugmentConfig:
        """Every change at its neutral value (no rotation, zoom 1, no photometric change, nothing
        added), except the given ``fields``: one family of nuisances at a time."""
        return cls.model_validate({**_NEUTRAL, **fields})

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        for name in ("scale_range", "exposure_range", "gamma_range", "contrast_range", "saturation_range"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        q_low, q_high = self.jpeg_quality_range
        if not 1 <= q_low <= q_high <= 100:
            raise ValueError(f"jpeg_quality_range must be within [1, 100] and ordered, got {(q_low, q_high)}")
        return self


_NEUTRAL: dict[str, object] = {
    "yaw_deg": 0.0,
    "pitch_deg": 0.0,
    "roll_deg": 0.0,
    "scale_range": (1.0, 1.0),
    "distortion_probability": 0.0,
    "exposure_range": (1.0, 1.0),
    "gamma_range": (1.0, 1.0),
    "contrast_range": (1.0, 1.0),
    "saturation_range": (1.0, 1.0),
    "colour_temperature": 0.0,
    "gradient_probability": 0.0,
    "occluder_probability": 0.0,
    "blur_probability": 0.0,
    "motion_blur_probability": 0.0,
    "noise_probability": 0.0,
    "jpeg_probability": 0.0,
}


def rotated_view_pose(t_map_optical: Pose3D, r_body_delta: np.ndarray) -> Pose3D:
    """Pose of the camera after rotating it by ``r_body_delta`` about its own body axes."""
    r_optical_delta = R_BODY_OPTICAL.T @ r_body_delta @ R_BODY_OPTICAL
    return Pose3D(t_map_optical.rotation @ r_optical_delta, t_map_optical.translation)


def rotation_homography(camera: PinholeCamera, r_body_delta: np.ndarray, zoom: float = 1.0) -> np.ndarray:
    """Homography from the original image to the rotated (and zoomed) camera's image."""
    r_optical_delta = R_BODY_OPTICAL.T @ r_body_delta @ R_BODY_OPTICAL
    k = camera.K
    k_new = k.copy()
    k_new[0, 0] *= zoom
    k_new[1, 1] *= zoom
    return k_new @ r_optical_delta.T @ np.linalg.inv(k)


class Augmenter:
    """Applies :class:`AugmentConfig` to images of ``camera`` (the camera at the image's size)."""

    def __init__(self, config: AugmentConfig, camera: PinholeCamera) -> None:
        self.config = config
        self.camera = camera.undistorted()
        w, h = camera.width, camera.height
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        self._pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
        self._ramp_x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
        self._ramp_y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]

    def __call__(
        self, image_bgr: np.ndarray, t_map_optical: Pose3D, rng: np.random.Generator
    ) -> tuple[np.ndarray, Pose3D]:
        """Augmented copy of ``image_bgr`` and the pose of the camera that would see it."""
        image = check_bgr_image(image_bgr)
        if image.shape[:2] != (self.camera.height, self.camera.width):
            raise ValueError(
                f"augmenter built for {self.camera.width}x{self.camera.height} images, got "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        if not self.config.enabled:
            return image, t_map_optical
        c = self.config
        r_delta = rotation_from_ypr(
            np.deg2rad(rng.uniform(-c.yaw_deg, c.yaw_deg)),
            np.deg2rad(rng.uniform(-c.pitch_deg, c.pitch_deg)),
            np.deg2rad(rng.uniform(-c.roll_deg, c.roll_deg)),
        )
        zoom = rng.uniform(*c.scale_range)
        k1 = (
            rng.uniform(-c.distortion_k1, c.distortion_k1) if rng.random() < c.distortion_probability else 0.0
        )
        out = self._warp(image, rotation_homography(self.camera, r_delta, zoom), k1)
        pixels: np.ndarray = out.astype(np.float32)
        if rng.random() < c.occluder_probability:
            self._occlude(pixels, rng)
        pixels = self._photometric(pixels, rng)
        if rng.random() < c.blur_probability and c.blur_sigma_max > 0.3:
            sigma = rng.uniform(0.3, c.blur_sigma_max)
            pixels = cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, sigmaY=sigma)
        if rng.random() < c.motion_blur_probability:
            pixels = cv2.filter2D(pixels, -1, _motion_kernel(rng.uniform(2.0, c.motion_blur_max_px), rng))
        if rng.random() < c.noise_probability and c.noise_std_max > 0:
            std = rng.uniform(0.0, c.noise_std_max)
            # Shot noise grows with brightness; keep a floor for read noise.
            scale = std * np.sqrt(0.25 + 0.75 * np.clip(pixels, 0.0, 255.0) / 255.0)
            pixels = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * scale
        result = np.clip(pixels + 0.5, 0.0, 255.0).astype(np.uint8)
        if rng.random() < c.jpeg_probability:
            quality = int(rng.integers(c.jpeg_quality_range[0], c.jpeg_quality_range[1] + 1))
            ok, encoded = cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                result = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        return result, rotated_view_pose(t_map_optical, r_delta)

    def _warp(self, image: np.ndarray, homography: np.ndarray, k1: float) -> np.ndarray:
        """Resample through the rotation homography and an optional radial distortion, in one remap."""
        k = self.camera.K
        pix = self._pixels
        if k1 != 0.0:
            # Output pixels are seen through a lens with distortion k1: find their ideal position
            # (first-order inverse of x_d = x_u (1 + k1 r^2), accurate for |k1| << 1).
            xn = (pix[0] - k[0, 2]) / k[0, 0]
            yn = (pix[1] - k[1, 2]) / k[1, 1]
            factor = 1.0 - k1 * (xn * xn + yn * yn)
            pix = np.stack(
                [xn * factor * k[0, 0] + k[0, 2], yn * factor * k[1, 1] + k[1, 2], np.ones_like(xn)]
            )
        src = np.linalg.inv(homography) @ pix
        map_x = (src[0] / src[2]).astype(np.float32).reshape(self.camera.height, self.camera.width)
        map_y = (src[1] / src[2]).astype(np.float32).reshape(self.camera.height, self.camera.width)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def _occlude(self, pixels: np.ndarray, rng: np.random.Generator) -> None:
        h, w = pixels.shape[:2]
        budget = self.config.max_occluded_fraction * w * h
        for _ in range(int(rng.integers(1, self.config.max_occluders + 1))):
            if rng.random() < 0.6:  # vehicle-like: wide, low, standing on the lower image half
                bw, bh = rng.uniform(0.15, 0.45) * w, rng.uniform(0.1, 0.3) * h
                bottom = rng.uniform(0.65, 1.05) * h
            else:  # pole / pedestrian-like: narrow and tall
                bw, bh = rng.uniform(0.02, 0.08) * w, rng.uniform(0.3, 0.7) * h
                bottom = rng.uniform(0.6, 1.0) * h
            if bw * bh > budget:
                break
            budget -= bw * bh
            x0 = int(rng.uniform(-0.1 * w, w - 0.5 * bw))
            y0 = int(bottom - bh)
            x1, y1 = min(w, int(x0 + bw)), min(h, int(bottom))
            x0, y0 = max(0, x0), max(0, y0)
            if x1 <= x0 or y1 <= y0:
                continue
            colour = rng.uniform(10.0, 230.0, size=3).astype(np.float32)
            shade = np.linspace(1.15, 0.7, y1 - y0, dtype=np.float32)[:, None, None]
            pixels[y0:y1, x0:x1] = colour[None, None, :] * shade

    def _photometric(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        out = pixels * np.float32(rng.uniform(*c.exposure_range))
        if rng.random() < c.gradient_probability and c.illumination_gradient > 0:
            angle = rng.uniform(0.0, 2.0 * np.pi)
            amplitude = rng.uniform(-c.illumination_gradient, c.illumination_gradient)
            ramp = 1.0 + amplitude * (np.cos(angle) * self._ramp_x + np.sin(angle) * self._ramp_y)
            out = out * np.maximum(ramp, 0.05)[:, :, None]
        out = np.clip(out, 0.0, 255.0)
        out = 255.0 * np.power(out / 255.0, np.float32(rng.uniform(*c.gamma_range)))
        mean = out.mean()
        out = mean + (out - mean) * np.float32(rng.uniform(*c.contrast_range))
        grey = out.mean(axis=2, keepdims=True)
        out = grey + (out - grey) * np.float32(rng.uniform(*c.saturation_range))
        t = rng.uniform(-c.colour_temperature, c.colour_temperature)
        tint = rng.uniform(-c.colour_temperature, c.colour_temperature) / 3.0
        gains = np.array([1.0 - t, 1.0 + tint, 1.0 + t], dtype=np.float32)  # B, G, R
        return (out * gains).astype(np.float32)


def _motion_kernel(length: float, rng: np.random.Generator) -> np.ndarray:
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    angle = rng.uniform(0.0, np.pi)
    centre = (size - 1) / 2.0
    dx, dy = 0.5 * length * np.cos(angle), 0.5 * length * np.sin(angle)
    p0 = (round(centre - dx), round(centre - dy))
    p1 = (round(centre + dx), round(centre + dy))
    cv2.line(kernel, p0, p1, 1.0, thickness=1, lineType=cv2.LINE_AA)
    return kernel / kernel.sum()
