"""Street-View-like coarse depth: a few planes per panorama in Google's ``depth_map`` format.

Street View serves each panorama's depth as a plane model: a 512x256 grid of plane indices (0 = sky
/ no data) and a table of planes ``(nx, ny, nz, d)``. The string in the metadata XML is URL-safe
base64 without ``=`` padding of zlib data laid out as

- an 8-byte header, little-endian: ``header_size u8 (= 8)``, ``n_planes u16``, ``width u16``,
  ``height u16``, ``offset u8`` (= 8, where the indices start),
- ``width * height`` uint8 plane indices, row-major,
- ``n_planes`` records of four little-endian float32 ``(nx, ny, nz, d)``.

Rays follow the widely used decoders (GSVPanoDepth.js, streetlevel): index column ``x``, row ``y``
has ``theta = (H - y - 0.5)/H * pi``, ``phi = (W - x - 0.5)/W * 2 pi + pi/2`` and direction
``v = (sin theta cos phi, sin theta sin phi, cos theta)``; the depth along ``v`` is
``|d / (n . v)|`` and is written to panorama column ``W - 1 - x`` (the index grid is mirrored
left-right relative to the image). In the panorama's body frame (x forward = the centre column,
y left, z up) these plane coordinates are x = right, y = backward, z = down.

Only the ground plane and building façades are modelled (like Street View: no cars, people,
trees), so rays through small objects return the surface behind them. The format itself (decoder and
:func:`~geoloc_ros.gis.depth.streetview.encode_depth_map`) is :mod:`geoloc_ros.gis.depth.streetview`.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np

from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.depth.streetview import GSV_FROM_BODY
from geoloc_ros.sim.render import rotate_rows
from geoloc_ros.sim.town import EPOCH_CAPTURE, QuadKind, Town

GSV_WIDTH = 512
GSV_HEIGHT = 256
MAX_GROUND_RANGE_M = 200.0
# Body (x forward, y left, z up) -> GSV plane coordinates (x right, y backward, z down).
BODY_TO_GSV = GSV_FROM_BODY


def gsv_ray_directions(width: int = GSV_WIDTH, height: int = GSV_HEIGHT) -> np.ndarray:
    """``(H, W, 3)`` unit rays of the index grid in GSV plane coordinates (decoder convention)."""
    y = np.arange(height, dtype=np.float64)
    x = np.arange(width, dtype=np.float64)
    theta = (height - y - 0.5) / height * np.pi
    phi = (width - x - 0.5) / width * 2.0 * np.pi + np.pi / 2.0
    st = np.sin(theta)[:, None]
    return np.stack(
        [
            st * np.cos(phi)[None, :],
            st * np.sin(phi)[None, :],
            np.broadcast_to(np.cos(theta)[:, None], (height, width)),
        ],
        axis=-1,
    )


def coarse_planes(
    town: Town, T_map_body: Pose3D, max_range_m: float = 150.0, epoch: int = EPOCH_CAPTURE
) -> tuple[np.ndarray, np.ndarray]:
    """Plane indices ``(256, 512) uint8`` and planes ``(n, 4) float32`` (row 0 = sky) of a panorama.

    The indices are in the depth map's own (mirrored) column order, ready for :func:`encode_depth_map`.
    """
    rays_gsv = gsv_ray_directions().reshape(-1, 3)
    rays_world = rotate_rows(
        rotate_rows(rays_gsv, BODY_TO_GSV.T), T_map_body.rotation
    )  # gsv -> body -> world
    c = T_map_body.translation
    best_t = np.full(len(rays_world), np.inf)
    best_plane = np.full(len(rays_world), -1, np.int64)
    # Ground plane z = 0.
    down = rays_world[:, 2] < -1e-6
    t_ground = np.where(down, -c[2] / np.where(down, rays_world[:, 2], -1.0), np.inf)
    t_ground[t_ground > MAX_GROUND_RANGE_M] = np.inf
    best_t = np.minimum(best_t, t_ground)
    best_plane[np.isfinite(t_ground)] = 0
    planes_world: list[tuple[np.ndarray, float]] = [(np.array([0.0, 0.0, 1.0]), 0.0)]
    q = town.quads
    idx = q.near(c, max_range_m)
    idx = idx[(q.kind[idx] == QuadKind.FACADE) & ((q.epochs[idx] & epoch) != 0)]
    idx = idx[np.einsum("ij,ij->i", c - q.origin[idx], q.normal[idx]) > 0]  # walls facing the camera
    for i in idx:
        n = q.normal[i]
        offset = float(n @ q.origin[i])
        denom = np.einsum("ij,j->i", rays_world, n)
        ok = np.abs(denom) > 1e-9
        t = np.full(len(rays_world), np.inf)
        t[ok] = (offset - n @ c) / denom[ok]
        hit = ok & (t > 0) & (t < best_t)
        if not hit.any():
            continue
        points = c + t[hit, None] * rays_world[hit]
        rel = points - q.origin[i]
        s = np.einsum("ij,j->i", rel, q.axis_s[i])
        h = np.einsum("ij,j->i", rel, q.axis_t[i])
        inside = (s >= 0) & (s <= q.size[i, 0]) & (h >= 0) & (h <= q.size[i, 1])
        rows = np.nonzero(hit)[0][inside]
        if len(rows) == 0:
            continue
        best_t[rows] = t[hit][inside]
        planes_world.append((n, offset))
        best_plane[rows] = len(planes_world) - 1
    # Keep the 254 most used planes (indices are uint8, 0 is sky).
    used, counts = np.unique(best_plane[best_plane >= 0], return_counts=True)
    keep = used[np.argsort(-counts, kind="stable")][:254]
    remap = np.full(len(planes_world), 0, np.int64)
    remap[np.sort(keep)] = np.arange(1, len(keep) + 1)
    indices = np.where(best_plane >= 0, remap[np.maximum(best_plane, 0)], 0).astype(np.uint8)
    table = np.zeros((len(keep) + 1, 4), np.float32)
    R = T_map_body.rotation
    for new, old in enumerate(np.sort(keep), start=1):
        n_w, offset = planes_world[int(old)]
        # n_w . X = offset with X = R p + c  ->  n_b . p + d = 0 with n_b = R^T n_w, d = n_w . c - offset.
        n_b = R.T @ n_w
        d = float(n_w @ c - offset)
        if d < 0:  # GSV planes face the camera: d > 0
            n_b, d = -n_b, -d
        table[new, :3] = BODY_TO_GSV @ n_b
        table[new, 3] = d
    return indices.reshape(GSV_HEIGHT, GSV_WIDTH), table


def panorama_xml(
    pano_id: str,
    lat: float,
    lon: float,
    alt: float,
    heading_deg: float,
    pitch_deg: float,
    roll_deg: float,
    image_width: int,
    depth_map: str,
    links: list[tuple[str, float]],
) -> str:
    """A Street-View-like metadata document (the fixture's layout) holding the depth map."""
    link_xml = "".join(f'<link yaw_deg="{yaw:.2f}" pano_id="{escape(pid)}"/>\n' for pid, yaw in links)
    return (
        "<panorama>\n"
        f'<data_properties image_width="{image_width}" image_height="{image_width // 2}" '
        f'pano_id="{escape(pano_id)}" '
        f'lat="{lat:.9f}" lng="{lon:.9f}" elevation_wgs84_m="{alt:.3f}">\n'
        "<copyright>geoloc_ros simulator</copyright>\n</data_properties>\n"
        f'<projection_properties projection_type="spherical" pano_yaw_deg="{heading_deg:.6f}" '
        f'tilt_yaw_deg="0" tilt_pitch_deg="{pitch_deg:.6f}" roll_deg="{roll_deg:.6f}"/>\n'
        f"<annotation_properties>\n{link_xml}</annotation_properties>\n"
        f"<model>\n<depth_map>{depth_map}</depth_map>\n</model>\n"
        "</panorama>\n"
    )
