"""Virtual views between panoramas: the seed's "augmented Street View".

A panorama with depth is re-projected to camera positions offset along the street (default 4 m
forward and backward) and the same rectified pinhole views are rendered there:

1. **Forward warp of depth.** Pixels of the range map (subsampled to about ``warp_grid_scale``
   samples per view pixel, keeping their exact directions) become 3D points with surface normals.
   Points whose surface the virtual camera sees from behind are dropped (back-face culling: the
   back of a sign is not its front mirrored). The rest are projected and z-buffered
   (``np.minimum.at``) with a footprint that grows with their magnification, so the nearest
   surface wins and stays closed.
2. **Crack filling, only where safe.** A pixel that received no point, or only a point of a farther
   surface leaking through a nearer one, is filled when it lies in a gap of at most
   ``max_crack_px`` pixels between two pixels of the *same* surface (their depths differ by at
   most ``max_crack_depth_step``), by interpolating inverse depth across the gap (exact on planes).
   Wider gaps are disocclusions and stay holes.
3. **Backward warp of colour with a visibility check.** Each pixel's 3D point is projected back
   into the panorama; it keeps the panorama's colour (bilinear, full resolution) only when the
   panorama's range there agrees with the point's distance (``depth_consistency``); otherwise it
   is a hole: the panorama saw something else in front of it. The point is then slid along its
   panorama ray onto the panorama's interpolated range, which gives the view's z-depth.
4. **Sky.** A pixel with no surface whose direction is sky / no-data in the panorama (range 0) is
   at infinity: it keeps the panorama's colour in that direction and depth 0 (unknown). Ranges the
   source could not store (e.g. beyond 65.5 m in a millimetre PNG) are 0 too and are treated alike.

Holes are black with ``valid == 0``; views with more than ``max_hole_ratio`` null pixels are
discarded and counted. Offsets are skipped when the virtual camera would stand inside a surface
(the panorama's range towards it is shorter than the offset plus ``min_clearance_m``: the seed's
"invalid camera position") or, with ``stop_before_neighbour``, at or beyond the adjacent panorama.

Street direction: towards the linked panoramas (``links``) best aligned with the heading,
else the nearest panoramas ahead of / behind the heading within ``neighbour_radius_m``, else the
heading itself.

Depth conventions: panorama depth = range along each ray; view depth = z along the optical axis
(metres, 0 = unknown).

**Why one module of ~700 lines.** Street axes, the forward depth warp (splatting, crack filling),
the blocked-offset test and the per-panorama/per-set drivers are the stages of one algorithm over the
same warp grid; they are not used apart.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.equirect import direction_columns_to_pixel, direction_to_pixel
from geoloc_ros.gis.errors import ViewSynthesisError
from geoloc_ros.gis.panorama_set import PanoramaRecord, PanoramaSet
from geoloc_ros.gis.views import (
    SynthesizedView,
    ViewSpec,
    ViewSynthesisConfig,
    check_panorama_inputs,
    grid_rays,
    render_rectified_views,
    view_specs,
    view_yaws_deg,
)

logger = logging.getLogger(__name__)

_NEAR_CLIP_M = 0.05  # points closer to the virtual camera than this are ignored
_ABS_DEPTH_TOLERANCE_M = 0.05  # added to the relative back-projection tolerance
_AZIMUTH_MARGIN_RAD = math.radians(1.0)
_CRACK_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
# Splat footprints follow magnification up to this factor (beyond, nearer surfaces may crack);
# a footprint of up to 1.25 px stays 1 px (the crack filling closes the gaps this leaves).
_MAX_MAGNIFICATION = 3.0
_FOOTPRINT_SLACK_PX = 0.25
# Normals come from range derivatives where the four neighbours are within this relative step.
_NORMAL_MAX_RANGE_STEP = 0.1
# Back-face culling keeps points up to ~3° past edge-on (sin 3° ≈ 0.05).
_BACKFACE_TOLERANCE = 0.05
# Azimuth culling needs every image corner in front of the camera's vertical plane (the view
# must not contain the zenith or nadir); below this forward component, no culling.
_MIN_FORWARD_FOR_AZIMUTH_CULL = 0.05


# ---------------------------------------------------------------------------- street direction
AxisSource = Literal["links", "neighbours", "heading"]


@dataclass(frozen=True)
class StreetAxis:
    """Directions (unit ENU vectors) of positive and negative along-street offsets of a panorama.

    ``*_gap_m`` is the distance to the adjacent panorama in that direction when one is known.
    """

    forward: np.ndarray
    backward: np.ndarray
    forward_gap_m: float | None
    backward_gap_m: float | None
    source: AxisSource

    def direction(self, offset_m: float) -> np.ndarray:
        return self.forward if offset_m > 0 else self.backward

    def gap_m(self, offset_m: float) -> float | None:
        return self.forward_gap_m if offset_m > 0 else self.backward_gap_m


def _heading_vector(heading_deg: float) -> np.ndarray:
    h = math.radians(heading_deg)
    return np.array([math.sin(h), math.cos(h), 0.0])  # compass bearing -> ENU (east, north)


def street_axis(
    position_enu: npt.ArrayLike,
    heading_deg: float,
    linked_positions: npt.ArrayLike | None = None,
    nearby_positions: npt.ArrayLike | None = None,
    max_cone_deg: float = 45.0,
) -> StreetAxis:
    """Along-street directions of a panorama.

    With ``linked_positions`` (the panoramas it links to): forward is the link best aligned with
    the heading among those ahead of it, backward the best aligned with the opposite direction.
    Otherwise with ``nearby_positions``: the nearest panorama within ``max_cone_deg`` of the
    heading (resp. its opposite). A missing side mirrors the other; with nothing, the heading.
    """
    here = np.asarray(position_enu, dtype=float).reshape(3)
    ahead = _heading_vector(heading_deg)
    sources: tuple[tuple[AxisSource, npt.ArrayLike | None, bool], ...] = (
        ("links", linked_positions, True),
        ("neighbours", nearby_positions, False),
    )
    for source, raw, use_alignment in sources:
        if raw is None:
            continue
        others = np.asarray(raw, dtype=float).reshape(-1, 3)
        delta = others - here
        dist = np.linalg.norm(delta, axis=1)
        keep = dist > 0.5  # a duplicate capture at the same place says nothing about the street
        if not np.any(keep):
            continue
        delta, dist = delta[keep], dist[keep]
        unit = delta / dist[:, None]
        horizontal = np.linalg.norm(unit[:, :2], axis=1)
        cosine = (unit[:, :2] @ ahead[:2]) / np.maximum(horizontal, 1e-9)
        min_cos = 0.0 if use_alignment else math.cos(math.radians(max_cone_deg))
        # Per side (ahead, behind): the unit direction and distance of the chosen panorama.
        picks: list[tuple[np.ndarray, float] | None] = []
        for sign in (1.0, -1.0):
            candidates = np.flatnonzero(sign * cosine > min_cos)
            if candidates.size == 0:
                picks.append(None)
                continue
            best = (
                candidates[np.argmax(sign * cosine[candidates])]
                if use_alignment
                else candidates[np.argmin(dist[candidates])]
            )
            picks.append((unit[best], float(dist[best])))
        fwd, bwd = picks
        if fwd is not None and bwd is not None:
            return StreetAxis(fwd[0], bwd[0], fwd[1], bwd[1], source)
        if fwd is not None:  # nothing behind: mirror the direction ahead, gap unknown
            return StreetAxis(fwd[0], -fwd[0], fwd[1], None, source)
        if bwd is not None:
            return StreetAxis(-bwd[0], bwd[0], None, bwd[1], source)
    return StreetAxis(ahead, -ahead, None, None, "heading")


def street_axes(
    pano_set: PanoramaSet, positions_enu: np.ndarray | None = None, neighbour_radius_m: float = 40.0
) -> dict[str, StreetAxis]:
    """:func:`street_axis` of every panorama of a set (links first, then neighbours by KD-tree)."""
    positions = pano_set.positions_enu() if positions_enu is None else np.asarray(positions_enu, dtype=float)
    tree = cKDTree(positions[:, :2])
    index = {r.id: i for i, r in enumerate(pano_set.records)}
    axes: dict[str, StreetAxis] = {}
    for i, record in enumerate(pano_set.records):
        linked = [index[link] for link in record.links if link in index and index[link] != i]
        near = [j for j in tree.query_ball_point(positions[i, :2], neighbour_radius_m) if j != i]
        axes[record.id] = street_axis(
            positions[i],
            record.heading_deg,
            positions[linked] if linked else None,
            positions[near] if near else None,
        )
    return axes


# ---------------------------------------------------------------------------- forward warp
def _rotate_columns(rotation: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``rotation @ columns`` for ``(3, N)`` arrays, keeping their dtype (see ``rotate_vectors``)."""
    r = [[float(v) for v in row] for row in np.asarray(rotation, dtype=float)]
    out = np.empty_like(columns)
    for i in range(3):
        out[i] = r[i][0] * columns[0] + r[i][1] * columns[1] + r[i][2] * columns[2]
    return out


def _shifted(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``grid[clip(r + rows), (c + cols) mod W]`` for every pixel: rows clamp, columns wrap."""
    out = np.roll(grid, -cols, axis=1) if cols else grid
    if rows > 0:
        out = np.concatenate([out[rows:], np.repeat(out[-1:], rows, axis=0)])
    elif rows < 0:
        out = np.concatenate([np.repeat(out[:1], -rows, axis=0), out[:rows]])
    return out


def _surface_normals(range_map: np.ndarray, stride: int) -> np.ndarray:
    """Body-frame surface normals ``(3, h, w)`` (float32) at every ``stride``-th row and column of a
    range map, from neighbours ``stride`` pixels away, facing the panorama centre; zero where the
    surface is unknown or not smooth (depth edges, holes).

    From the range's derivatives along azimuth and elevation: with ``P = r·d``, the tangents are
    ``r_a·d + r·cos(e)·e_a`` and ``r_e·d + r·e_e``, whose cross product is
    ``r·cos(e)·d - r_a·e_a - cos(e)·r_e·e_e`` (up to a positive factor). Computed on the whole
    (subsampled) grid with shifted copies and per-row / per-column trigonometry.
    """
    h, w = range_map.shape
    full = range_map.astype(np.float32, copy=False)

    def sub(grid: np.ndarray) -> np.ndarray:
        return grid[::stride, ::stride]

    r = sub(full)
    right, left = sub(_shifted(full, 0, stride)), sub(_shifted(full, 0, -stride))
    up, down = sub(_shifted(full, -stride, 0)), sub(_shifted(full, stride, 0))
    smooth = np.ones(r.shape, dtype=bool)
    limit = np.float32(_NORMAL_MAX_RANGE_STEP) * r
    for neighbour in (right, left, up, down):
        smooth &= (neighbour > 0) & (np.abs(neighbour - r) <= limit)
    dr_da = (right - left) * np.float32(1.0 / (2.0 * stride * (2.0 * np.pi / w)))  # column = azimuth step
    dr_de = (up - down) * np.float32(1.0 / (2.0 * stride * (np.pi / h)))  # row up = elevation up
    azimuth = (np.arange(0, w, stride) / w - 0.5) * 2.0 * np.pi
    elevation = np.pi / 2.0 - (np.arange(0, h, stride) + 0.5) / h * np.pi
    ca, sa = np.cos(azimuth).astype(np.float32)[None, :], np.sin(azimuth).astype(np.float32)[None, :]
    ce, se = np.cos(elevation).astype(np.float32)[:, None], np.sin(elevation).astype(np.float32)[:, None]
    # -(r cos e)·d + r_a·e_a + (cos e · r_e)·e_e, with d = (ce ca, -ce sa, se),
    # e_a = (-sa, -ca, 0) and e_e = (-se ca, se sa, ce): the negated cross product.
    radial, along_a, along_e = -(r * ce), dr_da, ce * dr_de
    normal = np.empty((3, *r.shape), dtype=np.float32)
    normal[0] = (radial * ce - along_e * se) * ca - along_a * sa
    normal[1] = (along_e * se - radial * ce) * sa - along_a * ca
    normal[2] = radial * se + along_e * ce
    length = np.sqrt(np.sum(normal * normal, axis=0))
    ok = smooth & (length > 0)
    normal *= np.where(ok, np.float32(1.0) / np.where(ok, length, np.float32(1.0)), np.float32(0.0))
    return normal


@dataclass(frozen=True, eq=False)
class PanoramaPoints:
    """Pixels of a panorama's range map (every ``stride``-th row and column) with known range, as
    3D points of the ``map`` frame (float32) relative to ``anchor`` (float64, keeps float32 precise
    in large maps), with their surface normals (zero where unknown) for back-face culling."""

    anchor: np.ndarray
    xyz: np.ndarray  # (3, N) float32, map frame minus anchor (rows: east, north, up)
    normals: np.ndarray  # (3, N) float32, map frame, unit or zero
    plane_offsets: np.ndarray  # (N,) float32, normal · xyz
    ranges: np.ndarray  # (N,) float32 metres from the panorama centre
    pixel_angle_rad: float  # angular spacing of the points

    @classmethod
    def from_range_map(cls, range_map: np.ndarray, T_map_body: Pose3D, stride: int = 1) -> PanoramaPoints:
        h, w = range_map.shape
        # Subsample pixels (keeping their exact directions) rather than resampling the ranges.
        sub_rows, sub_cols = np.nonzero(range_map[::stride, ::stride] > 0)
        rows, cols = sub_rows * stride, sub_cols * stride
        r = range_map[rows, cols].astype(np.float32)
        # Trigonometry per row / column, gathered per point (equirect.pixel_to_direction).
        azimuth = (np.arange(w) / w - 0.5) * 2.0 * np.pi
        elevation = np.pi / 2.0 - (np.arange(h) + 0.5) / h * np.pi
        ce = np.cos(elevation).astype(np.float32)[rows] * r
        body = np.empty((3, r.size), dtype=np.float32)
        body[0] = ce * np.cos(azimuth).astype(np.float32)[cols]
        body[1] = ce * -np.sin(azimuth).astype(np.float32)[cols]
        body[2] = np.sin(elevation).astype(np.float32)[rows] * r
        known = range_map[::stride, ::stride] > 0
        normals = _rotate_columns(T_map_body.rotation, _surface_normals(range_map, stride)[:, known])
        xyz = _rotate_columns(T_map_body.rotation, body)
        offsets = np.sum(normals * xyz, axis=0)
        return cls(T_map_body.translation.copy(), xyz, normals, offsets, r, stride * 2.0 * math.pi / w)

    def facing_dots(self, indices: np.ndarray, camera_position: np.ndarray) -> np.ndarray:
        """``normal · (camera - point)`` of the points ``indices``: negative when a camera at
        ``camera_position`` sees the back of the surface the panorama saw (0 without a normal)."""
        c = (np.asarray(camera_position, dtype=float) - self.anchor).tolist()
        n = self.normals
        return (
            n[0, indices] * c[0] + n[1, indices] * c[1] + n[2, indices] * c[2] - self.plane_offsets[indices]
        )

    def in_view_indices(
        self, camera_position: np.ndarray, axis_azimuth: float, half_width: float
    ) -> np.ndarray:
        """Indices of the points within ``half_width`` (rad) of azimuth ``axis_azimuth`` (ENU,
        counter-clockwise from east) seen from ``camera_position``; all when ``half_width >= pi/2``."""
        if half_width >= math.pi / 2.0:
            return np.arange(self.ranges.size)
        c, s = math.cos(axis_azimuth), math.sin(axis_azimuth)
        rx, ry = (self.anchor[:2] - np.asarray(camera_position, dtype=float)[:2]).tolist()
        x, y = self.xyz[0], self.xyz[1]
        # Coordinates along / across the axis; |atan2(across, along)| <= hw without any arctan.
        along = x * np.float32(c) + y * np.float32(s) + np.float32(c * rx + s * ry)
        across = y * np.float32(c) - x * np.float32(s) + np.float32(c * ry - s * rx)
        return np.flatnonzero((along > 0) & (np.abs(across) <= along * np.float32(math.tan(half_width))))


def _azimuth_half_width(camera: PinholeCamera, pitch_deg: float) -> float:
    """Largest azimuth (rad) between a levelled view's axis and any of its pixels; pi if unbounded."""
    corners = np.array(
        [
            [-0.5, -0.5],
            [camera.width - 0.5, -0.5],
            [-0.5, camera.height - 0.5],
            [camera.width - 0.5, camera.height - 0.5],
        ]
    )
    rays = camera.normalized_rays(corners)  # optical: x right, y down, z forward
    pitch = math.radians(pitch_deg)  # positive looks down
    forward = rays[:, 2] * math.cos(pitch) - rays[:, 1] * math.sin(pitch)
    if np.any(forward < _MIN_FORWARD_FOR_AZIMUTH_CULL):
        return math.pi
    # Lines of constant azimuth are straight in the image: the extremes sit at the corners.
    return float(np.max(np.abs(np.arctan2(rays[:, 0], forward)))) + _AZIMUTH_MARGIN_RAD


def _splat_depth(
    points_opt: np.ndarray,
    ranges: np.ndarray,
    facing: np.ndarray,
    pixel_angle_rad: float,
    camera: PinholeCamera,
    *,
    margin: int,
) -> np.ndarray:
    """z-buffer (float32, 0 = empty) of optical-frame points ``(3, N)`` splatted with adaptive footprints.

    Points whose surface the camera sees from behind (``facing``, see
    :meth:`PanoramaPoints.facing_dots`) are dropped: the back of a sign is not its front mirrored.
    A panorama pixel seen from closer than the panorama saw it covers more than one view pixel:
    its footprint (``k x k`` pixels) follows that magnification, so a nearer surface stays closed
    and farther points cannot leak through it. The buffer extends ``margin`` pixels beyond every
    border so cracks at the border can be bracketed from outside.
    """
    x, y, z = points_opt
    distance = np.sqrt(x * x + y * y + z * z)
    # A little past edge-on still counts as front: normals from range derivatives are noisy.
    keep = (z > _NEAR_CLIP_M) & (facing >= -_BACKFACE_TOLERANCE * distance)
    x, y, z, r, distance = x[keep], y[keep], z[keep], ranges[keep], distance[keep]
    width, height = camera.width + 2 * margin, camera.height + 2 * margin
    inv_z = np.float32(1.0) / z
    u = x * inv_z * np.float32(camera.fx) + np.float32(camera.cx + margin)
    v = y * inv_z * np.float32(camera.fy) + np.float32(camera.cy + margin)
    # Size in view pixels of the panorama pixel's patch (width r·angle, seen at distance d):
    # (r·angle / d) radians, times f/cos²(off-axis angle) = f·d²/z² pixels per radian.
    size = (np.float32(pixel_angle_rad * camera.fx) * r) * distance * inv_z * inv_z
    # The cap scales with the sample spacing: a coarse grid needs wider footprints at 1x already.
    max_footprint = math.ceil(_MAX_MAGNIFICATION * pixel_angle_rad * camera.fx)
    footprint = np.clip(np.ceil(size - _FOOTPRINT_SLACK_PX), 1, max_footprint).astype(np.int8)
    zbuf = np.full(width * height, np.inf, dtype=np.float32)
    for k in range(1, max_footprint + 1):
        chosen = footprint == k
        if not np.any(chosen):
            continue
        uk, vk, zk = u[chosen], v[chosen], z[chosen]
        offsets = np.arange(k, dtype=np.float32) - np.float32((k - 1) / 2.0)
        for oy in offsets:
            row = np.rint(vk + oy).astype(np.int64)
            for ox in offsets:
                col = np.rint(uk + ox).astype(np.int64)
                inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
                np.minimum.at(zbuf, row[inside] * width + col[inside], zk[inside])
    zbuf[np.isinf(zbuf)] = 0.0
    return zbuf.reshape(height, width)


def fill_cracks(depth: np.ndarray, max_gap_px: int, max_depth_step: float) -> np.ndarray:
    """Fill cracks of a splatted z-buffer (0 = empty) without touching disocclusions.

    A pixel is a crack when, along one of four directions, the nearest pixels on both sides that
    are clearly nearer than it (any pixel, for an empty one) lie within a gap of ``max_gap_px``
    pixels and belong to one surface (inverse depths within ``max_depth_step``). It takes the
    inverse-depth interpolation of the two, along the direction with the narrowest gap.
    """
    if max_gap_px <= 0:
        return depth.copy()
    h, w = depth.shape
    scale = np.float32(1.0 + max_depth_step)
    here = np.where(depth > 0, depth, np.inf).astype(np.float32)
    # Only pixels with a clearly nearer pixel within reach can be cracks: search those alone.
    window = np.ones((2 * max_gap_px + 1, 2 * max_gap_px + 1), np.uint8)
    nearest = cv2.erode(here, window, borderType=cv2.BORDER_CONSTANT, borderValue=float("inf"))
    candidates = np.flatnonzero(np.isfinite(nearest) & (nearest * scale < here))
    rows, cols = np.divmod(candidates, w)
    centre = here.ravel()[candidates]
    best_gap = np.full(candidates.size, np.inf, dtype=np.float32)
    best_value = np.zeros(candidates.size, dtype=np.float32)
    for dy, dx in _CRACK_DIRECTIONS:
        sides = []
        for sign in (1, -1):
            dist = np.zeros(candidates.size, dtype=np.float32)
            value = np.zeros(candidates.size, dtype=np.float32)
            for step in range(1, max_gap_px + 1):
                r, c = rows + sign * step * dy, cols + sign * step * dx
                inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                other = np.full(candidates.size, np.inf, dtype=np.float32)
                other[inside] = here[r[inside], c[inside]]
                found = (dist == 0) & np.isfinite(other) & (other * scale < centre)
                dist[found] = step
                value[found] = other[found]
            sides.append((dist, value))
        (d1, z1), (d2, z2) = sides
        gap = d1 + d2 - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            inv1, inv2 = 1.0 / z1, 1.0 / z2
            same_surface = np.abs(inv1 - inv2) <= max_depth_step * np.maximum(inv1, inv2)
            ok = (d1 > 0) & (d2 > 0) & (gap <= max_gap_px) & same_surface & (gap < best_gap)
            inv = inv1 + (inv2 - inv1) * (d1 / (d1 + d2))
        best_gap[ok] = gap[ok]
        best_value[ok] = 1.0 / inv[ok]
    out = depth.copy()
    filled = np.isfinite(best_gap)
    out.ravel()[candidates[filled]] = best_value[filled]
    return out


def render_virtual_view(
    spec: ViewSpec,
    camera: PinholeCamera,
    image: np.ndarray,
    range_map: np.ndarray | None,
    T_map_body: Pose3D,
    *,
    config: ViewSynthesisConfig,
    points: PanoramaPoints | None = None,
) -> SynthesizedView:
    """Render one virtual view of a panorama (see the module docstring for the method).

    ``range_map``: the panorama's range along each ray (metres, 0 = unknown), on the grid whose
    pixels become the warped points (:func:`warp_grid_width`; :func:`synthesize_panorama_views`
    resamples it). ``points`` (from that same map) may be shared by the views of a panorama.
    """
    if range_map is None:
        raise ViewSynthesisError(f"view {spec.view_id}: a virtual view needs the panorama's range map")
    check_panorama_inputs(image, range_map, spec.pano_id)
    pts = points if points is not None else PanoramaPoints.from_range_map(range_map, T_map_body)
    R_mo = spec.T_map_optical.rotation
    # Cull by azimuth around the view axis before projecting (a view sees ~1/5 of the turn).
    axis = R_mo[:, 2]
    chosen = pts.in_view_indices(
        spec.T_map_optical.translation,
        math.atan2(axis[1], axis[0]),
        _azimuth_half_width(camera, spec.pitch_deg),
    )
    rel = (pts.anchor - spec.T_map_optical.translation).astype(np.float32)
    points_opt = _rotate_columns(R_mo.T, np.take(pts.xyz, chosen, axis=1) + rel[:, None])  # (3, n) optical
    facing = pts.facing_dots(chosen, spec.T_map_optical.translation)
    margin = config.max_crack_px
    depth = _splat_depth(points_opt, pts.ranges[chosen], facing, pts.pixel_angle_rad, camera, margin=margin)
    depth = fill_cracks(depth, config.max_crack_px, config.max_crack_depth_step)
    depth = depth[margin : margin + camera.height, margin : margin + camera.width]

    # Backward warp: each pixel's point (or direction at infinity) in the panorama (float32).
    h, w = image.shape[:2]
    warp = _backward_warp(depth, camera, spec.T_map_optical, T_map_body, range_map, (w, h), config)
    view_image = cv2.remap(image, warp.map_x, warp.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    view_image[~warp.valid] = 0
    hole_ratio = float(1.0 - np.count_nonzero(warp.valid) / warp.valid.size)
    valid_mask = warp.valid.view(np.uint8) * np.uint8(255)
    return SynthesizedView(spec, camera, view_image, warp.depth, valid_mask, hole_ratio)


@dataclass(frozen=True, eq=False)
class _BackwardWarp:
    """Where each view pixel samples the panorama (``cv2.remap`` maps), which pixels keep it, and
    their refined z-depth (0 = unknown)."""

    map_x: np.ndarray  # (H, W) float32
    map_y: np.ndarray  # (H, W) float32
    valid: np.ndarray  # (H, W) bool
    depth: np.ndarray  # (H, W) float32


@functools.lru_cache(maxsize=8)
def _grid_ray_columns(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` (float32, flattened, read-only) of :func:`~geoloc_ros.gis.views.grid_rays`
    (whose ``z`` is 1), cached per camera."""
    rays = grid_rays(camera)
    columns = tuple(np.ascontiguousarray(rays[..., i].reshape(-1), dtype=np.float32) for i in (0, 1))
    for column in columns:
        column.flags.writeable = False
    return columns[0], columns[1]


def _backward_warp(
    depth: np.ndarray,
    camera: PinholeCamera,
    T_map_optical: Pose3D,
    T_map_body: Pose3D,
    range_map: np.ndarray,
    image_size: tuple[int, int],
    config: ViewSynthesisConfig,
) -> _BackwardWarp:
    """Steps 3 and 4 of the module docstring for a splatted, crack-filled z-buffer ``depth``.

    float32, one flat array per coordinate (pixel positions in a panorama of 16k columns stay
    exact to 1/500 px); no boolean row selections, which cost more than the arithmetic.
    """
    w, h = image_size
    z = depth.reshape(-1)
    has_depth = z > 0
    R_bo = T_map_body.rotation.T @ T_map_optical.rotation  # panorama body <- view optical
    offset_body = T_map_body.rotation.T @ (T_map_optical.translation - T_map_body.translation)
    # Each pixel's point at its depth, or its direction at infinity (no depth: scale 1, no offset).
    rx, ry = _grid_ray_columns(camera)
    scale = np.where(has_depth, z, np.float32(1.0))
    moved = has_depth.astype(np.float32)
    r = [[np.float32(v) for v in row] for row in R_bo]
    x, y, zz = (
        (rx * r[i][0] + ry * r[i][1] + r[i][2]) * scale + moved * np.float32(offset_body[i]) for i in range(3)
    )
    u_src, v_src, distance = direction_columns_to_pixel(x, y, zz, w, h)

    # Panorama range at the 2x2 range-map pixels around each source position: a point agrees
    # with any of them, a direction is sky when any of them is (so edges do not leave 1-px holes).
    hd, wd = range_map.shape
    ud = u_src * np.float32(wd / w)
    vd = (v_src + np.float32(0.5)) * np.float32(hd / h) - np.float32(0.5)
    c0f, r0f = np.floor(ud), np.floor(vd)
    fu, fv = ud - c0f, vd - r0f
    c0 = np.mod(c0f.astype(np.intp), wd)
    c1 = c0 + 1
    c1[c1 == wd] = 0
    r0 = r0f.astype(np.intp)
    ranges = range_map.reshape(-1).astype(np.float32, copy=False)
    tolerance = np.float32(config.depth_consistency) * distance + np.float32(_ABS_DEPTH_TOLERANCE_M)
    sky = np.zeros(z.shape, dtype=bool)
    weight = np.zeros(z.shape, dtype=np.float32)
    weighted_range = np.zeros(z.shape, dtype=np.float32)
    for row, row_weight in ((r0, np.float32(1.0) - fv), (r0 + 1, fv)):
        row_start = np.clip(row, 0, hd - 1) * wd
        for col, col_weight in ((c0, np.float32(1.0) - fu), (c1, fu)):
            r_src = ranges[row_start + col]
            agree = np.abs(r_src - distance) <= tolerance
            agree &= r_src > 0
            w_corner = (row_weight * col_weight + np.float32(1e-6)) * agree
            weight += w_corner
            weighted_range += w_corner * r_src
            sky |= r_src <= 0
    agrees = weight > 0
    valid = np.where(has_depth, agrees, sky)
    # Refine the splatted depth: slide the point along its panorama ray onto the panorama's own
    # (bilinearly interpolated) range there, then take that surface point's z in the view. This
    # removes most of the error of splatting a sample onto a neighbouring pixel.
    refine = has_depth & agrees
    on_surface = weighted_range / np.where(refine, weight * distance, np.float32(1.0))
    a = [np.float32(v) for v in R_bo[:, 2]]  # the view's optical axis in the panorama body frame
    along = (x * a[0] + y * a[1] + zz * a[2]) * on_surface - np.float32(offset_body @ R_bo[:, 2])
    shape = (camera.height, camera.width)
    return _BackwardWarp(
        map_x=np.mod(u_src, np.float32(w)).reshape(shape),
        map_y=np.clip(v_src, 0.0, h - 1.0).reshape(shape),
        valid=valid.reshape(shape),
        depth=np.where(refine, along, np.float32(0.0)).reshape(shape),
    )


def offset_is_blocked(
    range_map: np.ndarray,
    T_map_body: Pose3D,
    direction_enu: np.ndarray,
    distance_m: float,
    clearance_m: float,
) -> bool:
    """True when a surface of the panorama lies closer than ``distance_m + clearance_m`` along
    ``direction_enu`` (the virtual camera would stand inside or behind it)."""
    hd, wd = range_map.shape
    u, v = direction_to_pixel(T_map_body.rotation.T @ np.asarray(direction_enu, dtype=float), wd, hd)
    col = int(np.rint(u)) % wd
    row = int(np.clip(np.rint(v), 0, hd - 1))
    # A few pixels around the direction: the camera is not a point ray (about 1.5° at 512 px).
    window = max(1, wd // 256)
    rows = np.clip(np.arange(row - window, row + window + 1), 0, hd - 1)
    cols = np.mod(np.arange(col - window, col + window + 1), wd)
    ranges = range_map[np.ix_(rows, cols)]
    ranges = ranges[ranges > 0]
    return bool(ranges.size and ranges.min() < distance_m + clearance_m)


# ---------------------------------------------------------------------------- orchestration
@dataclass(frozen=True)
class VirtualOffsetReport:
    """What happened at one signed offset of one panorama."""

    offset_m: float
    status: Literal["rendered", "blocked", "beyond_neighbour", "no_depth"]
    hole_ratios: tuple[float, ...] = ()  # of every rendered view, kept or discarded
    discarded: int = 0


@dataclass
class PanoramaViews:
    """The views synthesized for one panorama and the record of its virtual offsets."""

    pano_id: str
    rectified: list[SynthesizedView] = field(default_factory=list)
    virtual: list[SynthesizedView] = field(default_factory=list)  # kept ones only
    offsets: list[VirtualOffsetReport] = field(default_factory=list)

    @property
    def views(self) -> list[SynthesizedView]:
        return self.rectified + self.virtual


def warp_grid_width(camera: PinholeCamera, scale: float) -> int:
    """Width (even) of the equirectangular grid of points warped into virtual views: ``scale``
    samples per view pixel (at the view's centre) along each axis."""
    return 2 * max(4, math.ceil(math.pi * max(camera.fx, camera.fy) * scale))


def warp_points_source(range_map: np.ndarray, camera: PinholeCamera, scale: float) -> tuple[np.ndarray, int]:
    """The range map and stride that give about :func:`warp_grid_width` warped points: a finer map
    is subsampled by an integer stride (exact directions); a coarser one is upsampled with nearest
    neighbour (never blending a foreground range with a background one)."""
    width = warp_grid_width(camera, scale)
    if range_map.shape[1] >= width:
        return range_map, max(1, range_map.shape[1] // width)
    upsampled = cv2.resize(range_map.astype(np.float32), (width, width // 2), interpolation=cv2.INTER_NEAREST)
    return upsampled, 1


def synthesize_panorama_views(
    pano_id: str,
    image: np.ndarray,
    range_map: np.ndarray | None,
    T_map_body: Pose3D,
    *,
    heading_deg: float,
    config: ViewSynthesisConfig,
    camera: PinholeCamera | None = None,
    axis: StreetAxis | None = None,
) -> PanoramaViews:
    """Rectified views and virtual views (at ``config.virtual_offsets_m``) of one panorama.

    ``range_map`` is the panorama's range along each ray (metres, 0 = unknown) or None (then only
    rectified views, without depth). ``axis`` defaults to the heading (see :func:`street_axis`).
    """
    cam = camera if camera is not None else config.camera.pinhole()
    result = PanoramaViews(pano_id)
    result.rectified = render_rectified_views(
        pano_id, image, range_map, T_map_body, heading_deg=heading_deg, config=config, camera=cam
    )
    if not config.virtual_offsets_m:
        return result
    if range_map is None:
        result.offsets = [VirtualOffsetReport(o, "no_depth") for o in config.virtual_offsets_m]
        return result
    warp_range, stride = warp_points_source(range_map, cam, config.warp_grid_scale)
    street = axis if axis is not None else street_axis(T_map_body.translation, heading_deg)
    yaws = view_yaws_deg(heading_deg, config)
    points: PanoramaPoints | None = None
    for offset in config.virtual_offsets_m:
        distance = abs(offset)
        direction = street.direction(offset)
        gap = street.gap_m(offset)
        if config.stop_before_neighbour and gap is not None and distance >= gap - config.min_clearance_m:
            result.offsets.append(VirtualOffsetReport(offset, "beyond_neighbour"))
            continue
        if offset_is_blocked(warp_range, T_map_body, direction, distance, config.min_clearance_m):
            result.offsets.append(VirtualOffsetReport(offset, "blocked"))
            continue
        if points is None:
            points = PanoramaPoints.from_range_map(warp_range, T_map_body, stride)
        position = T_map_body.translation + distance * direction
        ratios = []
        discarded = 0
        for spec in view_specs(pano_id, "virtual", offset, position, yaws, pitch_deg=config.pitch_deg):
            view = render_virtual_view(spec, cam, image, warp_range, T_map_body, config=config, points=points)
            ratios.append(view.hole_ratio)
            if view.hole_ratio > config.max_hole_ratio:
                discarded += 1
                logger.debug("discarded %s: %.1f%% null pixels", spec.view_id, 100.0 * view.hole_ratio)
            else:
                result.virtual.append(view)
        result.offsets.append(VirtualOffsetReport(offset, "rendered", tuple(ratios), discarded))
    return result


# A depth map with less known (non-zero) pixels than this is treated as no depth (all-zero or
# mostly empty depth files cannot support virtual views).
MIN_DEPTH_COVERAGE = 0.05


def load_panorama_for_views(
    pano_set: PanoramaSet, record: PanoramaRecord, camera: PinholeCamera, config: ViewSynthesisConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """A panorama's BGR image and range map; Street View planes are evaluated exactly on the
    virtual views' warp grid (:func:`warp_grid_width`) rather than upsampled from 512x256."""
    image = pano_set.load_image(record)
    range_map = pano_set.load_depth(record, width=warp_grid_width(camera, config.warp_grid_scale))
    if range_map is not None:
        coverage = float(np.count_nonzero(range_map > 0)) / max(range_map.size, 1)
        if coverage < MIN_DEPTH_COVERAGE:
            logger.warning(
                "panorama %s: only %.1f%% of its depth is known (below %.0f%%): depth ignored, its "
                "virtual views are skipped and its features get no 3D points",
                record.id,
                100.0 * coverage,
                100.0 * MIN_DEPTH_COVERAGE,
            )
            return image, None
    return image, range_map


@dataclass(frozen=True)
class HoleRatioRow:
    """One row of the seed's table "translation offset -> ratio of virtual views with null pixels"."""

    offset_m: float
    positions: int  # virtual camera positions considered
    invalid_positions: int  # blocked: the camera would stand inside a surface
    skipped_positions: int  # beyond the adjacent panorama, or no depth
    views: int  # views rendered (kept + discarded)
    views_with_null_pixels: int
    mean_hole_ratio: float
    discarded: int

    @property
    def ratio_with_null_pixels(self) -> float:
        return self.views_with_null_pixels / self.views if self.views else 0.0


def hole_ratio_table(
    results: Iterable[PanoramaViews], null_pixel_threshold: float = 0.0
) -> list[HoleRatioRow]:
    """Per signed offset: positions, invalid positions, and views with null pixels.

    A view "has null pixels" when its hole ratio exceeds ``null_pixel_threshold`` (0 = any).
    """
    by_offset: dict[float, list[VirtualOffsetReport]] = {}
    for result in results:
        for report in result.offsets:
            by_offset.setdefault(report.offset_m, []).append(report)
    rows = []
    for offset in sorted(by_offset):
        reports = by_offset[offset]
        ratios = np.array([r for rep in reports for r in rep.hole_ratios], dtype=float)
        rows.append(
            HoleRatioRow(
                offset_m=offset,
                positions=len(reports),
                invalid_positions=sum(rep.status == "blocked" for rep in reports),
                skipped_positions=sum(rep.status in ("beyond_neighbour", "no_depth") for rep in reports),
                views=int(ratios.size),
                views_with_null_pixels=int(np.count_nonzero(ratios > null_pixel_threshold)),
                mean_hole_ratio=float(ratios.mean()) if ratios.size else 0.0,
                discarded=sum(rep.discarded for rep in reports),
            )
        )
    return rows
