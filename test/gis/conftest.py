"""An analytic street scene rendered exactly by per-pixel ray/rectangle intersection.

Independent of the code under test: directions come from compass bearings and elevations written
out here, not from ``geoloc_ros.gis.equirect`` or the pose classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

SKY_BGR = np.array([235.0, 206.0, 135.0])


@dataclass(frozen=True)
class Rectangle:
    centre: np.ndarray  # ENU
    axis_a: np.ndarray  # unit, in-plane
    axis_b: np.ndarray  # unit, in-plane
    half_a: float
    half_b: float
    base_bgr: tuple[float, float, float]
    periods_m: tuple[float, float]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.axis_a, self.axis_b)

    def texture(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Smooth procedural colour (BGR float) of in-plane coordinates."""
        pa, pb = self.periods_m
        wave = np.sin(2 * np.pi * a / pa)[:, None] * np.array([40.0, -30.0, 25.0]) + np.cos(
            2 * np.pi * b / pb + 0.7
        )[:, None] * np.array([-25.0, 35.0, 30.0])
        return np.clip(np.array(self.base_bgr) + wave, 0, 255)


@dataclass(frozen=True)
class StreetScene:
    """A straight street along compass ``bearing_deg`` through the ENU origin, camera 2.5 m high."""

    bearing_deg: float
    rectangles: tuple[Rectangle, ...]

    @property
    def along(self) -> np.ndarray:
        b = np.deg2rad(self.bearing_deg)
        return np.array([np.sin(b), np.cos(b), 0.0])

    @property
    def left(self) -> np.ndarray:
        return np.cross(np.array([0.0, 0.0, 1.0]), self.along)

    def trace(self, origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance along each unit direction to the nearest surface (0 = sky) and BGR colour."""
        d = directions.reshape(-1, 3)
        best = np.full(len(d), np.inf)
        colour = np.tile(SKY_BGR, (len(d), 1))
        for rect in self.rectangles:
            n = rect.normal
            denom = d @ n
            with np.errstate(divide="ignore", invalid="ignore"):
                t = ((rect.centre - origin) @ n) / denom
            hit_point = origin + d * t[:, None]
            rel = hit_point - rect.centre
            a, b = rel @ rect.axis_a, rel @ rect.axis_b
            hit = (
                (np.abs(denom) > 1e-9) & (t > 1e-6) & (np.abs(a) <= rect.half_a) & (np.abs(b) <= rect.half_b)
            )
            closer = hit & (t < best)
            best[closer] = t[closer]
            colour[closer] = rect.texture(a[closer], b[closer])
        distance = np.where(np.isfinite(best), best, 0.0)
        return distance.reshape(directions.shape[:-1]), colour.reshape(directions.shape)

    def render_panorama(
        self, origin: np.ndarray, heading_deg: float, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Equirectangular BGR image and range map (width x width/2) at ``origin``."""
        height = width // 2
        u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
        bearing = np.deg2rad(heading_deg + (u / width - 0.5) * 360.0)
        elevation = np.deg2rad(90.0 - (v + 0.5) / height * 180.0)
        dirs = np.stack(
            [np.cos(elevation) * np.sin(bearing), np.cos(elevation) * np.cos(bearing), np.sin(elevation)],
            axis=-1,
        )
        distance, colour = self.trace(origin, dirs)
        return np.round(colour).astype(np.uint8), distance.astype(np.float32)

    def render_pinhole(
        self, origin: np.ndarray, yaw_deg: float, width: int, height: int, fx: float, cx: float, cy: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Levelled pinhole render looking along compass ``yaw_deg``: BGR image and z-depth."""
        y = np.deg2rad(yaw_deg)
        forward = np.array([np.sin(y), np.cos(y), 0.0])
        right = np.array([np.cos(y), -np.sin(y), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
        rays = forward + ((u - cx) / fx)[..., None] * right + ((v - cy) / fx)[..., None] * down
        norm = np.linalg.norm(rays, axis=-1)
        distance, colour = self.trace(origin, rays / norm[..., None])
        return np.round(colour).astype(np.uint8), (distance / norm).astype(np.float32)


def _rect(scene_along, scene_left, s, lateral, z, axis_a, axis_b, half_a, half_b, bgr, periods) -> Rectangle:
    centre = s * scene_along + lateral * scene_left + np.array([0.0, 0.0, z])
    return Rectangle(centre, axis_a, axis_b, half_a, half_b, bgr, periods)


def make_street_scene(bearing_deg: float = 70.0) -> StreetScene:
    b = np.deg2rad(bearing_deg)
    along = np.array([np.sin(b), np.cos(b), 0.0])
    left = np.cross(np.array([0.0, 0.0, 1.0]), along)
    up = np.array([0.0, 0.0, 1.0])
    ground_z = -2.5
    rects = (
        # ground (normal up), walls facing the street, an occluding panel and a pole, an end wall
        _rect(along, left, 0, 0, ground_z, along, left, 80, 8, (110, 115, 120), (3.1, 2.3)),
        _rect(along, left, 0, 8, 3.5, along, -up, 80, 6, (60, 120, 190), (2.7, 1.9)),
        _rect(along, left, 0, -8, 3.5, along, up, 80, 6, (170, 90, 70), (3.3, 2.1)),
        _rect(along, left, 12, 2.75, -0.5, left, up, 1.25, 2.0, (40, 200, 60), (0.9, 1.1)),
        _rect(along, left, 20, -4, 0.5, -left, up, 0.2, 3.0, (30, 30, 220), (0.5, 1.5)),
        _rect(along, left, 80, 0, 3.5, -left, up, 8, 6, (200, 200, 60), (2.9, 2.2)),
        _rect(along, left, -80, 0, 3.5, left, up, 8, 6, (90, 60, 160), (2.5, 2.6)),
    )
    return StreetScene(bearing_deg, rects)


@pytest.fixture(scope="session")
def street_scene() -> StreetScene:
    return make_street_scene()
