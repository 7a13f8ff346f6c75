"""Exact rasteriser of the planar town: pinhole views and equirectangular panoramas.

Each visible quad is drawn with ``cv2.warpPerspective`` of its texture under the quad's
plane-to-image homography, restricted to the quad's on-screen bounding box. Visibility is a
z-buffer of inverse depth, which is affine in pixel coordinates for a plane, so every pixel gets the
depth of its own ray exactly; coverage comes from the texture's alpha (the quad's edge is where the
bilinear alpha crosses 0.5, and pixels whose ray meets the plane behind the camera are rejected by
the sign of the inverse depth). Textures are mip-mapped; the level follows the quad's on-screen
texel density. Lighting is Lambertian per quad (sun + sky ambient, no cast shadows); empty pixels
show the sky (gradient, sun glow, clouds).

Public API (stable; other modules' tests use it):

- :func:`render_pinhole` ``(town, camera, T_map_optical, conditions) -> (bgr, zdepth)``: a
  distortion-aware pinhole view. ``zdepth`` is float32 metres along the optical axis, 0 = sky.
- :func:`render_panorama` ``(town, T_map_body, width, conditions) -> (bgr, range)``: an
  equirectangular panorama in the public convention of :mod:`geoloc_ros.gis.equirect`;
  ``range`` is float32 metres along each pixel's ray, 0 = sky.
- :class:`Conditions`: epoch (which of the capture/drive objects exist) and illumination.

Depth values are exact for the surface seen at each pixel centre (the surface is picked on the
supersampled grid's nearest sample; its plane gives the depth of the pixel's own ray).

**Why one module of ~700 lines.** The z-buffered quad rasteriser and its two projections
(pinhole with distortion, equirectangular panorama) share the candidate culling, shading and
depth-along-ray code; splitting the projections would export those internals.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geo.heading import compass_to_enu_yaw
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.sim import textures as tex
from geoloc_ros.sim.errors import SimError
from geoloc_ros.sim.town import EPOCH_CAPTURE, EPOCH_DRIVE, Town

NEAR_M = 0.05


def rotate_rows(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``points @ rotation.T`` for ``(..., 3)`` arrays, without BLAS: on a busy machine BLAS threads
    make these tall-skinny products tens of times slower than a plain einsum."""
    return np.einsum("...j,ij->...i", points, rotation)


CLOUD_HEIGHT_M = 1500.0
CLOUD_TEXTURE_M = 12000.0


# ---------------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Conditions:
    """What a view sees besides geometry: which epoch's objects, and the light.

    ``sun_direction`` is a unit ENU vector towards the sun; ``sun_bgr`` and ``ambient_bgr`` scale the
    texture colours (1.0 = unchanged) for the direct and the diffuse sky light.
    """

    epoch: int = EPOCH_CAPTURE
    sun_direction: tuple[float, float, float] = (0.0, -0.5, 0.8660254037844386)
    sun_bgr: tuple[float, float, float] = (0.45, 0.45, 0.45)
    ambient_bgr: tuple[float, float, float] = (0.7, 0.7, 0.7)
    sky_zenith_bgr: tuple[float, float, float] = (200.0, 140.0, 80.0)
    sky_horizon_bgr: tuple[float, float, float] = (235.0, 215.0, 195.0)
    cloud_cover: float = 0.3
    cloud_seed: int = 0

    def __post_init__(self) -> None:
        if self.epoch not in (EPOCH_CAPTURE, EPOCH_DRIVE):
            raise SimError(
                f"conditions epoch must be {EPOCH_CAPTURE} (capture) or {EPOCH_DRIVE} (drive), "
                f"got {self.epoch}"
            )
        d = np.asarray(self.sun_direction, float)
        if not np.isfinite(d).all() or abs(np.linalg.norm(d) - 1.0) > 1e-6:
            raise SimError(f"sun_direction must be a unit vector, got {self.sun_direction}")
        if not 0.0 <= self.cloud_cover <= 1.0:
            raise SimError(f"cloud_cover must be in [0, 1], got {self.cloud_cover}")

    @classmethod
    def flat(cls, epoch: int = EPOCH_CAPTURE) -> Conditions:
        """Texture colours unchanged on every surface (no sun, ambient 1): for geometric tests."""
        return cls(epoch=epoch, sun_bgr=(0.0, 0.0, 0.0), ambient_bgr=(1.0, 1.0, 1.0), cloud_cover=0.0)

    @classmethod
    def at_hour(cls, hour: float, cloud_cover: float, epoch: int, seed: int = 0) -> Conditions:
        """Daylight at local solar ``hour`` (6-19 h): sun azimuth, elevation and colour temperature.

        The sun rises in the east, culminates at 62° elevation due south at 12.5 h and sets in the
        west; low sun is warmer and weaker, clouds trade direct light for diffuse light.
        """
        azimuth_compass = 180.0 + 15.0 * (hour - 12.5)
        elevation = math.radians(max(3.0, 62.0 * math.sin(math.pi * (hour - 6.0) / 13.0)))
        yaw = float(compass_to_enu_yaw(azimuth_compass))
        sun = (math.cos(elevation) * math.cos(yaw), math.cos(elevation) * math.sin(yaw), math.sin(elevation))
        warm = float(np.clip((0.45 - elevation) / 0.4, 0.0, 1.0))  # 0 at high sun, 1 near the horizon
        direct = (0.75 - 0.2 * warm) * (1.0 - 0.8 * cloud_cover)
        sun_bgr = (direct * (1.0 - 0.45 * warm), direct * (1.0 - 0.15 * warm), direct * (1.0 + 0.1 * warm))
        ambient = 0.5 + 0.25 * cloud_cover - 0.08 * warm
        ambient_bgr = (ambient * (1.08 - 0.1 * cloud_cover), ambient, ambient * (0.95 + 0.05 * cloud_cover))
        grey = cloud_cover
        zenith = np.array([205.0, 135.0, 70.0]) * (1 - grey) + np.array([175.0, 170.0, 165.0]) * grey
        horizon = np.array([230.0, 210.0, 190.0]) * (1 - warm) + np.array([150.0, 190.0, 240.0]) * warm
        horizon = horizon * (1 - 0.5 * grey) + np.array([200.0, 200.0, 198.0]) * 0.5 * grey
        return cls(
            epoch=epoch,
            sun_direction=sun,
            sun_bgr=sun_bgr,
            ambient_bgr=ambient_bgr,
            sky_zenith_bgr=(float(zenith[0]), float(zenith[1]), float(zenith[2])),
            sky_horizon_bgr=(float(horizon[0]), float(horizon[1]), float(horizon[2])),
            cloud_cover=float(cloud_cover),
            cloud_seed=int(seed),
        )


@functools.lru_cache(maxsize=4)
def _cloud_texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = tex.value_noise(rng, 512, 512, 64.0, octaves=5)
    # Mirror-tile so the texture wraps without a seam.
    periodic = np.block([[noise, noise[:, ::-1]], [noise[::-1, :], noise[::-1, ::-1]]])
    return np.ascontiguousarray((periodic + 1.0) * 0.5, dtype=np.float32)


def sky_colour(directions: np.ndarray, conditions: Conditions) -> np.ndarray:
    """BGR float colours (0-255 scale) of the sky along world directions ``(N, 3)``."""
    d = np.asarray(directions, np.float32)
    d = d / np.sqrt(np.einsum("ij,ij->i", d, d))[:, None]
    elevation = np.clip(d[:, 2], -1.0, 1.0)
    t = np.sqrt(np.clip(elevation, 0.0, 1.0))[:, None]
    zenith = np.asarray(conditions.sky_zenith_bgr, np.float32)
    horizon = np.asarray(conditions.sky_horizon_bgr, np.float32)
    colour = (horizon * (1 - t) + zenith * t).astype(np.float32)
    below = elevation < 0
    colour[below] = horizon * 0.8
    if conditions.cloud_cover > 0:
        up = np.maximum(d[:, 2], 0.02)
        scale = 1024.0 / CLOUD_TEXTURE_M * CLOUD_HEIGHT_M
        n = len(d)
        rows = -(-n // 1024)
        mx = np.zeros(rows * 1024, np.float32)
        my = np.zeros(rows * 1024, np.float32)
        mx[:n] = np.mod(d[:, 0] / up * scale, 1024.0)
        my[:n] = np.mod(-d[:, 1] / up * scale, 1024.0)
        density = cv2.remap(
            _cloud_texture(conditions.cloud_seed),
            mx.reshape(rows, 1024),
            my.reshape(rows, 1024),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_WRAP,
        ).reshape(-1)[:n]
        threshold = 1.0 - conditions.cloud_cover
        cloud = np.clip((density - threshold * 0.9) / 0.25, 0.0, 1.0) * np.clip(elevation / 0.15, 0.0, 1.0)
        cloud_bgr = np.array([238.0, 238.0, 236.0], np.float32) * (1.0 - 0.25 * conditions.cloud_cover)
        shade = (0.75 + 0.25 * density)[:, None]
        colour = colour * (1 - cloud[:, None]) + (cloud_bgr * shade) * cloud[:, None]
    sun = np.asarray(conditions.sun_direction, np.float32)
    cos_sun = np.einsum("ij,j->i", d, sun)
    near_sun = cos_sun > 0.97  # the glow (cos^200) is below 0.3 % further out
    if near_sun.any():
        glow = cos_sun[near_sun] ** 200 * (1.0 - conditions.cloud_cover)
        colour[near_sun] += glow[:, None] * 120.0
    return colour.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------- candidates
@dataclass
class _Candidates:
    """Surfaces near a viewpoint: static quads (``ref >= 0``) and ground cells (``ref = -1 - cell``)."""

    origin: np.ndarray
    axis_s: np.ndarray
    axis_t: np.ndarray
    size: np.ndarray
    normal: np.ndarray
    two_sided: np.ndarray
    ref: np.ndarray
    centre: np.ndarray
    radius: np.ndarray


def _gather(town: Town, centre: np.ndarray, conditions: Conditions, radius: float) -> _Candidates:
    q = town.quads
    idx = q.near(centre, radius)
    if len(idx):
        idx = idx[(q.epochs[idx] & conditions.epoch) != 0]
        far = np.linalg.norm(q.centre[idx] - centre, axis=1) - q.radius[idx] > radius
        facing = np.einsum("ij,ij->i", centre - q.origin[idx], q.normal[idx]) > 1e-9
        idx = idx[~far & (facing | q.two_sided[idx])]
    cells = town.ground_cells_near(centre, radius)
    g_origin, side = town.ground_cell_geometry(cells)
    n_g = len(cells)
    ex = np.tile([1.0, 0.0, 0.0], (n_g, 1))
    ey = np.tile([0.0, 1.0, 0.0], (n_g, 1))
    ez = np.tile([0.0, 0.0, 1.0], (n_g, 1))
    g_centre = g_origin + np.array([side / 2, side / 2, 0.0])
    return _Candidates(
        origin=np.concatenate([q.origin[idx], g_origin]),
        axis_s=np.concatenate([q.axis_s[idx], ex]),
        axis_t=np.concatenate([q.axis_t[idx], ey]),
        size=np.concatenate([q.size[idx], np.full((n_g, 2), side)]),
        normal=np.concatenate([q.normal[idx], ez]),
        two_sided=np.concatenate([q.two_sided[idx], np.zeros(n_g, bool)]),
        ref=np.concatenate([idx, -1 - cells]),
        centre=np.concatenate([q.centre[idx], g_centre]),
        radius=np.concatenate([q.radius[idx], np.full(n_g, side * 0.7072)]),
    )


# ------------------------------------------------------------------------------------ raster
@dataclass
class Raster:
    """What one canvas render produced (before shading)."""

    colour: np.ndarray  # (H, W, 3) uint8 lit surface colour (texture x light, saturating)
    ids: np.ndarray  # (H, W) int32, index into the planes, -1 = sky
    plane_normal: np.ndarray  # (K, 3) world
    plane_offset: np.ndarray  # (K,) n . X = offset on the plane
    light: np.ndarray  # (K, 3) float32 lighting factor of each drawn surface
    invz: np.ndarray  # (H, W) float32 inverse z-depth at the pixel centres, 0 = sky


def _clip_near(points: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon to ``z >= NEAR_M``."""
    out = []
    n = len(points)
    for i in range(n):
        a, b = points[i], points[(i + 1) % n]
        ina, inb = a[2] >= NEAR_M, b[2] >= NEAR_M
        if ina:
            out.append(a)
        if ina != inb:
            t = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.asarray(out) if out else np.zeros((0, 3))


def _surface_light(
    normal: np.ndarray, to_camera: np.ndarray, two_sided: bool, conditions: Conditions
) -> np.ndarray:
    n = normal
    if two_sided and float(n @ to_camera) < 0:
        n = -n
    cos_sun = max(0.0, float(n @ np.asarray(conditions.sun_direction)))
    return (
        np.asarray(conditions.ambient_bgr, np.float32) + np.asarray(conditions.sun_bgr, np.float32) * cos_sun
    )


def rasterize(
    town: Town,
    K: np.ndarray,
    width: int,
    height: int,
    T_map_optical: Pose3D,
    conditions: Conditions,
    candidates: _Candidates | None = None,
    view_distance_m: float | None = None,
) -> Raster:
    """Draw the town into an ideal (distortion-free) pinhole canvas with intrinsics ``K``."""
    radius = float(view_distance_m or town.scenario.render.view_distance_m)
    c = T_map_optical.translation
    R_cw = T_map_optical.rotation.T
    cands = candidates if candidates is not None else _gather(town, c, conditions, radius)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    colour = np.zeros((height, width, 3), np.uint8)
    ids = np.full((height, width), -1, np.int32)
    invz = np.zeros((height, width), np.float32)
    normals: list[np.ndarray] = []
    offsets: list[float] = []
    lights: list[np.ndarray] = []
    if len(cands.ref) == 0:
        return Raster(colour, ids, np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3), np.float32), invz)
    # Frustum culling of all candidates at once: corners outside one side plane -> invisible.
    ws = cands.size[:, 0:1, None]
    hs = cands.size[:, 1:2, None]
    corners = np.stack(
        [
            cands.origin,
            cands.origin + cands.axis_s * ws[:, 0],
            cands.origin + cands.axis_s * ws[:, 0] + cands.axis_t * hs[:, 0],
            cands.origin + cands.axis_t * hs[:, 0],
        ],
        axis=1,
    )
    cam = rotate_rows(corners - c, R_cw)  # (N, 4, 3)
    x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
    xmin, xmax = (-0.5 - cx) / fx, (width - 0.5 - cx) / fx
    ymin, ymax = (-0.5 - cy) / fy, (height - 0.5 - cy) / fy
    outside = (
        np.all(z < NEAR_M, axis=1)
        | np.all(x < xmin * z, axis=1)
        | np.all(x > xmax * z, axis=1)
        | np.all(y < ymin * z, axis=1)
        | np.all(y > ymax * z, axis=1)
    )
    dist = np.linalg.norm(cands.centre - c, axis=1) - cands.radius
    order = np.argsort(np.where(outside, np.inf, dist), kind="stable")
    order = order[~outside[order]]
    us = np.arange(width, dtype=np.float32)
    vs = np.arange(height, dtype=np.float32)
    ground_ppm = town.scenario.town.ground_px_per_m
    for k in order:
        poly = _clip_near(cam[k])
        if len(poly) < 3:
            continue
        pu = fx * poly[:, 0] / poly[:, 2] + cx
        pv = fy * poly[:, 1] / poly[:, 2] + cy
        x0 = max(0, math.floor(pu.min()) - 1)
        x1 = min(width, math.ceil(pu.max()) + 2)
        y0 = max(0, math.floor(pv.min()) - 1)
        y1 = min(height, math.ceil(pv.max()) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        zmin = float(poly[:, 2].min())
        zbuf = invz[y0:y1, x0:x1]
        if float(zbuf.min()) > 1.0 / zmin:
            continue  # everything in the box is already nearer than the quad's nearest point
        n_w = cands.normal[k]
        o_w = cands.origin[k]
        n_c = R_cw @ n_w
        d_c = float(n_w @ (o_w - c))
        if abs(d_c) < 1e-9:
            continue  # seen edge-on
        w_m, h_m = cands.size[k]
        ref = int(cands.ref[k])
        # Mip level from the texel density on screen (geometric mean of the two axes).
        to_cam = c - cands.centre[k]
        cos_view = max(abs(float(n_w @ to_cam)) / max(float(np.linalg.norm(to_cam)), 1e-9), 0.05)
        z_ref = math.sqrt(zmin * float(poly[:, 2].max()))
        screen_ppm = fx / z_ref * math.sqrt(cos_view)
        if ref >= 0:
            pyramid = town.quad_texture(ref)
            ratio = pyramid.texels_per_m(0)[0] / screen_ppm
            level = int(np.clip(math.floor(math.log2(max(ratio, 1.0))), 0, len(pyramid.levels) - 1))
            image = pyramid.levels[level]
            tw, th = pyramid.sizes[level]
        else:
            ratio = ground_ppm / screen_ppm
            level = int(np.clip(math.floor(math.log2(max(ratio, 1.0))), 0, town.ground_level_count() - 1))
            image = town.ground_texture(-1 - ref, level)
            th, tw = image.shape[0] - 2, image.shape[1] - 2
        # texel (padded) -> plane (s, t) -> camera -> canvas box.
        A = np.array(
            [[w_m / tw, 0.0, -0.5 * w_m / tw], [0.0, -h_m / th, h_m + 0.5 * h_m / th], [0.0, 0.0, 1.0]]
        )
        M = np.column_stack([R_cw @ cands.axis_s[k], R_cw @ cands.axis_t[k], R_cw @ (o_w - c)])
        Kroi = np.array([[fx, 0.0, cx - x0], [0.0, fy, cy - y0], [0.0, 0.0, 1.0]])
        H = Kroi @ M @ A
        warped = cv2.warpPerspective(
            image,
            H,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0, 0),
        )
        a = n_c[0] / (fx * d_c)
        b = n_c[1] / (fy * d_c)
        cc = (n_c[2] - n_c[0] * cx / fx - n_c[1] * cy / fy) / d_c
        inv = (a * us[x0:x1])[None, :] + (b * vs[y0:y1] + cc)[:, None]
        mask = (warped[:, :, 3] >= 128) & (inv > zbuf)
        if not mask.any():
            continue
        index = len(offsets)
        light = _surface_light(n_w, to_cam, bool(cands.two_sided[k]), conditions)
        scale = (float(light[0]), float(light[1]), float(light[2]), 1.0)
        lit = cv2.multiply(warped, scale)  # type: ignore[call-overload]  # a per-channel scalar
        np.copyto(zbuf, inv, where=mask)
        np.copyto(colour[y0:y1, x0:x1], lit[:, :, :3], where=mask[:, :, None])
        ids[y0:y1, x0:x1][mask] = index
        normals.append(n_w)
        offsets.append(float(n_w @ o_w))
        lights.append(light)
    return Raster(
        colour,
        ids,
        np.asarray(normals).reshape(-1, 3),
        np.asarray(offsets),
        np.asarray(lights, np.float32).reshape(-1, 3),
        invz,
    )


def shade(
    raster: Raster,
    directions_world: np.ndarray | None,
    conditions: Conditions,
    sky_directions: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Float32 BGR image (0-255 scale): the lit surfaces, and the sky where nothing was drawn.

    ``sky_directions(rows, cols) -> (N, 3)`` gives world directions of the sky pixels.
    """
    ids = raster.ids
    out = raster.colour.astype(np.float32)
    hit = ids >= 0
    sky_rows, sky_cols = np.nonzero(~hit)
    if len(sky_rows):
        if directions_world is not None:
            dirs = directions_world
        elif sky_directions is not None:
            dirs = sky_directions(sky_rows, sky_cols)
        else:
            raise SimError("shade() needs the sky's directions (directions_world or sky_directions)")
        out[sky_rows, sky_cols] = sky_colour(dirs, conditions)
    return out


def depth_along_rays(
    raster: Raster, ids: np.ndarray, centre: np.ndarray, rays_world: np.ndarray
) -> np.ndarray:
    """Ray parameter ``t`` (``X = centre + t * ray``) to each pixel's surface; 0 where ``ids < 0``."""
    hit = ids >= 0
    t = np.zeros(ids.shape, np.float64)
    if not hit.any():
        return t.astype(np.float32)
    k = ids[hit]
    n = raster.plane_normal[k]
    r = rays_world[hit]
    denom = np.einsum("ij,ij->i", n, r)
    num = raster.plane_offset[k] - np.einsum("ij,j->i", n, centre)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(np.abs(denom) > 1e-12, num / denom, 0.0)
    t[hit] = np.maximum(values, 0.0)
    return t.astype(np.float32)


# ------------------------------------------------------------------------------------ pinhole
@functools.lru_cache(maxsize=16)
def ideal_canvas(camera: PinholeCamera) -> PinholeCamera:
    """A distortion-free camera with ``camera``'s focal lengths whose image covers every ray of
    ``camera`` (identity for an undistorted camera)."""
    if not camera.is_distorted:
        return camera
    w, h = camera.width, camera.height
    border = np.concatenate(
        [
            np.column_stack([np.arange(w), np.zeros(w)]),
            np.column_stack([np.arange(w), np.full(w, h - 1)]),
            np.column_stack([np.zeros(h), np.arange(h)]),
            np.column_stack([np.full(h, w - 1), np.arange(h)]),
        ]
    ).astype(float)
    rays = camera.normalized_rays(border)
    margin = 3.0
    umin, umax = camera.fx * rays[:, 0].min(), camera.fx * rays[:, 0].max()
    vmin, vmax = camera.fy * rays[:, 1].min(), camera.fy * rays[:, 1].max()
    cx = -umin + margin
    cy = -vmin + margin
    width = math.ceil(umax - umin + 2 * margin) + 1
    height = math.ceil(vmax - vmin + 2 * margin) + 1
    return PinholeCamera(width, height, camera.fx, camera.fy, cx, cy)


@functools.lru_cache(maxsize=16)
def raw_pixel_rays(camera: PinholeCamera) -> np.ndarray:
    """``(H, W, 3)`` float32 optical-frame rays ``(x, y, 1)`` of every raw (distorted) pixel."""
    rays = camera.pixel_grid_rays().astype(np.float32)
    rays.setflags(write=False)
    return rays


@dataclass
class IdealView:
    """A rendered ideal (distortion-free) canvas at 1x: lit image, z-depth, and what made it."""

    camera: PinholeCamera  # the canvas (undistorted)
    image: np.ndarray  # float32 BGR 0-255 (linear, not clipped)
    raster: Raster  # at ``supersample`` x resolution
    supersample: int
    T_map_optical: Pose3D

    @functools.cached_property
    def zdepth(self) -> np.ndarray:
        """Exact float32 z-depth of every canvas pixel centre (0 = sky)."""
        cam = self.camera
        if self.supersample == 1:
            inv = self.raster.invz
            with np.errstate(divide="ignore"):
                return np.where(inv > 0, 1.0 / inv, 0.0).astype(np.float32)
        u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
        rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
        return self.zdepth_for_rays(rays)

    def approx_zdepth(self, step: int) -> np.ndarray:
        """Z-depth on every ``step``-th canvas pixel (nearest supersample): cheap, for motion blur."""
        ss = self.supersample
        inv = self.raster.invz[ss // 2 :: ss * step, ss // 2 :: ss * step]
        with np.errstate(divide="ignore"):
            return np.where(inv > 0, 1.0 / inv, 0.0).astype(np.float32)

    def zdepth_for_rays(self, rays_optical: np.ndarray) -> np.ndarray:
        """Exact z-depth of optical-frame rays ``(..., 3)`` with ``z = 1`` inside the canvas."""
        shape = rays_optical.shape[:-1]
        r = rays_optical.reshape(-1, 3)
        ss = self.supersample
        cam = self.camera
        u = (cam.fx * r[:, 0] + cam.cx + 0.5) * ss - 0.5
        v = (cam.fy * r[:, 1] + cam.cy + 0.5) * ss - 0.5
        h, w = self.raster.ids.shape
        ui = np.clip(np.floor(u + 0.5).astype(np.int64), 0, w - 1)
        vi = np.clip(np.floor(v + 0.5).astype(np.int64), 0, h - 1)
        ids = self.raster.ids[vi, ui]
        rays_world = rotate_rows(r.astype(np.float64), self.T_map_optical.rotation)
        z = depth_along_rays(self.raster, ids, self.T_map_optical.translation, rays_world)
        return z.reshape(shape)


def render_ideal(
    town: Town,
    camera: PinholeCamera,
    T_map_optical: Pose3D,
    conditions: Conditions,
    supersample: int = 1,
    view_distance_m: float | None = None,
) -> IdealView:
    """Render an undistorted pinhole canvas (``camera`` must be distortion-free)."""
    if camera.is_distorted:
        raise SimError("render_ideal needs a distortion-free camera (use ideal_canvas(camera))")
    if supersample < 1:
        raise SimError(f"supersample must be >= 1, got {supersample}")
    big = camera.scaled(supersample) if supersample > 1 else camera
    raster = rasterize(
        town, big.K, big.width, big.height, T_map_optical, conditions, view_distance_m=view_distance_m
    )
    R_wc = T_map_optical.rotation

    def sky_dirs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rays = np.column_stack([(cols - big.cx) / big.fx, (rows - big.cy) / big.fy, np.ones(len(rows))])
        return rotate_rows(rays, R_wc)

    image = shade(raster, None, conditions, sky_dirs)
    if supersample > 1:
        image = cv2.resize(image, camera.size, interpolation=cv2.INTER_AREA)
    return IdealView(camera, image, raster, supersample, T_map_optical)


@functools.lru_cache(maxsize=16)
def distortion_maps(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps from ``camera``'s raw pixels into its :func:`ideal_canvas`."""
    canvas = ideal_canvas(camera)
    rays = raw_pixel_rays(camera)
    map_x = (canvas.fx * rays[..., 0] + canvas.cx).astype(np.float32)
    map_y = (canvas.fy * rays[..., 1] + canvas.cy).astype(np.float32)
    return map_x, map_y


def distort(
    view: IdealView, camera: PinholeCamera, image: np.ndarray | None = None, with_depth: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample an ideal canvas (or an image on it, e.g. after motion blur) into ``camera``'s raw
    pixels; returns (float32 image, exact z-depth or None)."""
    img = view.image if image is None else image
    if not camera.is_distorted:
        return img, (view.zdepth if with_depth else None)
    map_x, map_y = distortion_maps(camera)
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, (view.zdepth_for_rays(raw_pixel_rays(camera)) if with_depth else None)


def render_pinhole(
    town: Town,
    camera: PinholeCamera,
    T_map_optical: Pose3D,
    conditions: Conditions,
    supersample: int = 1,
    view_distance_m: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free image of ``town`` seen by ``camera`` at ``T_map_optical``.

    Returns ``(bgr, zdepth)``: BGR uint8 ``(H, W, 3)`` and float32 metres along the optical axis for
    each raw pixel (0 = sky). Lens distortion of ``camera`` is applied exactly (each raw pixel shows
    the scene along its undistorted ray). ``supersample`` renders at that factor then area-averages.
    """
    canvas = ideal_canvas(camera)
    view = render_ideal(town, canvas, T_map_optical, conditions, supersample, view_distance_m)
    image, zdepth = distort(view, camera)
    assert zdepth is not None
    return tex.to_u8(image), zdepth


# ---------------------------------------------------------------------------------- panoramas
# Optical frames of the six cube faces in the panorama body frame (x forward, y left, z up):
# columns are the optical x (right), y (down), z (viewing direction).
_FACE_ROTATIONS = np.array(
    [
        [[0, 0, 1], [-1, 0, 0], [0, -1, 0]],  # front (+x)
        [[1, 0, 0], [0, 0, 1], [0, -1, 0]],  # left (+y)
        [[0, 0, -1], [1, 0, 0], [0, -1, 0]],  # back (-x)
        [[-1, 0, 0], [0, 0, -1], [0, -1, 0]],  # right (-y)
        [[0, 1, 0], [-1, 0, 0], [0, 0, 1]],  # up (+z)
        [[0, -1, 0], [-1, 0, 0], [0, 0, -1]],  # down (-z)
    ],
    dtype=float,
)
_FACE_PAD = 2


def _face_camera(width: int, supersample: float) -> PinholeCamera:
    core = math.ceil(width / math.pi * supersample)
    size = core + 2 * _FACE_PAD
    f = core / 2.0
    return PinholeCamera(size, size, f, f, (size - 1) / 2.0, (size - 1) / 2.0)


def _equirect_angles(width: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    height = width // 2
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)[rows]
    azimuth = (u / width - 0.5) * 2.0 * np.pi
    elevation = np.pi / 2.0 - (v + 0.5) / height * np.pi
    return azimuth, elevation


def _equirect_directions(width: int, rows: slice) -> np.ndarray:
    """Body-frame unit directions of a block of rows (as :func:`gis.equirect.pixel_to_direction`)."""
    azimuth, elevation = _equirect_angles(width, rows)
    ce = np.cos(elevation)[:, None]
    return np.stack(
        [
            ce * np.cos(azimuth)[None, :],
            -ce * np.sin(azimuth)[None, :],
            np.broadcast_to(np.sin(elevation)[:, None], (len(elevation), width)),
        ],
        axis=-1,
    )


@functools.lru_cache(maxsize=4)
def _atlas_maps(width: int, face: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Remap maps from an equirectangular image of ``width`` into the 6-face atlas (faces stacked)."""
    height = width // 2
    map_x = np.empty((height, width), np.float32)
    map_y = np.empty((height, width), np.float32)
    block = 128
    axes = _FACE_ROTATIONS[:, :, 2]  # viewing direction of each face
    for r0 in range(0, height, block):
        rows = slice(r0, min(height, r0 + block))
        d = _equirect_directions(width, rows)
        k = np.argmax(rotate_rows(d, axes), axis=-1)
        local = np.einsum("hwj,hwji->hwi", d, _FACE_ROTATIONS[k])  # R_face^T d
        map_x[rows] = face.fx * local[..., 0] / local[..., 2] + face.cx
        map_y[rows] = face.fy * local[..., 1] / local[..., 2] + face.cy + k * face.height
    map_x.setflags(write=False)
    map_y.setflags(write=False)
    return map_x, map_y


def render_panorama(
    town: Town,
    T_map_body: Pose3D,
    width: int,
    conditions: Conditions,
    supersample: float = 1.0,
    view_distance_m: float | None = None,
    depth_width: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular panorama (``width x width/2``) at the body pose ``T_map_body``.

    The image follows :mod:`geoloc_ros.gis.equirect`: the centre column looks along the body x axis
    (the record's ``heading_deg``), azimuth grows to the right, row 0 is the zenith. Returns
    ``(bgr, range)``: BGR uint8 and float32 metres along each pixel's ray (0 = sky), the range at
    ``depth_width`` (default ``width``) columns. Rendered as six cube faces (``supersample`` times
    the equator's pixel density) resampled with ``cv2.remap``.
    """
    if width < 8 or width % 2:
        raise SimError(f"panorama width must be an even number >= 8, got {width}")
    dw = width if depth_width is None else int(depth_width)
    if dw < 8 or dw % 2:
        raise SimError(f"panorama depth width must be an even number >= 8, got {dw}")
    radius = float(view_distance_m or town.scenario.render.view_distance_m)
    centre = T_map_body.translation
    cands = _gather(town, centre, conditions, radius)
    face = _face_camera(width, supersample)
    atlas = np.empty((6 * face.height, face.width, 3), np.uint8)
    atlas_ids = np.empty((6 * face.height, face.width), np.float32)
    normals, offsets = [], []
    count = 0
    u, v = np.meshgrid(np.arange(face.width, dtype=np.float64), np.arange(face.height, dtype=np.float64))
    face_rays = np.stack([(u - face.cx) / face.fx, (v - face.cy) / face.fy, np.ones_like(u)], axis=-1)
    for k in range(6):
        T_face = T_map_body.compose(Pose3D(_FACE_ROTATIONS[k], np.zeros(3)))
        raster = rasterize(town, face.K, face.width, face.height, T_face, conditions, candidates=cands)
        R_wc = T_face.rotation

        def sky_dirs(rows: np.ndarray, cols: np.ndarray, R: np.ndarray = R_wc) -> np.ndarray:
            return rotate_rows(face_rays[rows, cols], R)

        lit = shade(raster, None, conditions, sky_dirs)
        rows = slice(k * face.height, (k + 1) * face.height)
        atlas[rows] = tex.to_u8(lit)
        atlas_ids[rows] = np.where(raster.ids >= 0, raster.ids + count, -1).astype(np.float32)
        normals.append(raster.plane_normal)
        offsets.append(raster.plane_offset)
        count += len(raster.plane_offset)
    map_x, map_y = _atlas_maps(width, face)
    bgr = cv2.remap(atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    merged = Raster(
        atlas[:0],
        atlas_ids[:0].astype(np.int32),
        np.concatenate(normals),
        np.concatenate(offsets),
        np.zeros((0, 3), np.float32),
        atlas_ids[:0],
    )
    dmap_x, dmap_y = _atlas_maps(dw, face)
    ids = cv2.remap(atlas_ids, dmap_x, dmap_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    ids = np.rint(ids).astype(np.int32)
    rng_img = np.zeros(ids.shape, np.float32)
    block = 256
    R_wb = T_map_body.rotation
    for r0 in range(0, ids.shape[0], block):
        rows = slice(r0, min(ids.shape[0], r0 + block))
        dirs_world = rotate_rows(_equirect_directions(dw, rows), R_wb)
        rng_img[rows] = depth_along_rays(merged, ids[rows], centre, dirs_world)
    return bgr, rng_img
