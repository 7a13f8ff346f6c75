"""The procedural town: street network, buildings and street furniture as textured planar quads.

Geometry lives in the ``map`` frame (ENU metres at the scenario's origin, ground at z = 0). Every
surface is a rectangle in its own plane (:class:`QuadSet`, stored column-wise so views cull with
numpy): origin ``o`` (a corner), unit axes ``S`` (along the texture's rows, left to right) and ``T``
(up the texture), size ``(w, h)`` in metres, normal ``S x T``. Texture row 0 is the ``t = h`` edge.

The ground is not stored: it is a grid of square cells whose textures are drawn on demand from the
vector street map (asphalt, lane markings, crosswalks, kerbs, sidewalk slabs, grass), so a city of
any size never sits in memory. Façade and object textures are generated lazily from per-object
seeds and kept in a bounded LRU cache.

Objects carry an epoch mask (:data:`EPOCH_CAPTURE`, :data:`EPOCH_DRIVE`): parked cars, people and
some posters and shop signs differ between the GIS capture and the drive.

**Why one module of ~1000 lines.** Streets, quads, the :class:`Town` and the placement of buildings,
ground and props share the street network and the seeded placement rules (``seed_for``, clearances
along the drive path); a split by job (streets / quads / placement) is planned once the
imperfect-map simulation work on this module has landed.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar, cast

import cv2
import numpy as np
from scipy.spatial import cKDTree

from geoloc_ros.sim import textures as tex
from geoloc_ros.sim.errors import SimError
from geoloc_ros.sim.scenario import Scenario

logger = logging.getLogger(__name__)

CachedT = TypeVar("CachedT", tex.TexturePyramid, np.ndarray)

EPOCH_CAPTURE = 1
EPOCH_DRIVE = 2
EPOCH_BOTH = EPOCH_CAPTURE | EPOCH_DRIVE

GROUND_CELL_M = 16.0
GROUND_MARGIN_M = 0.05  # ground tiles overlap their neighbours by this much (no cracks)
KERB_M = 0.2
FIELD_STEP_M = 0.25  # street-coordinate fields of ground tiles are interpolated from this grid
UP = np.array([0.0, 0.0, 1.0])


class QuadKind(IntEnum):
    FACADE = 0
    POSTER = 1
    SIGN = 2
    VEHICLE = 3
    PEDESTRIAN = 4
    TREE = 5
    POLE = 6
    GROUND = 7


def seed_for(*parts: int) -> int:
    """A stable 63-bit seed from integers (order-independent of how views are scheduled)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1
    )


# ------------------------------------------------------------------------------------ streets
@dataclass
class Street:
    id: int
    node_a: int
    node_b: int
    points: np.ndarray  # (N, 2) centre line from node_a to node_b
    half_width: float
    sidewalk: float
    name: str
    centre_dashes: bool
    edge_lines: bool
    tone: float
    cumlen: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.cumlen = np.concatenate([[0.0], np.cumsum(seg)])

    @property
    def length(self) -> float:
        return float(self.cumlen[-1])

    @property
    def outer(self) -> float:
        """Distance from the centre line to the outer edge of the sidewalk."""
        return self.half_width + self.sidewalk

    def point_at(self, s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position(s) and unit tangent(s) at arc length ``s`` (clamped to the street)."""
        s_arr = np.clip(np.asarray(s, dtype=float), 0.0, self.length)
        idx = np.clip(np.searchsorted(self.cumlen, s_arr, side="right") - 1, 0, len(self.points) - 2)
        seg = self.points[idx + 1] - self.points[idx]
        seg_len = np.maximum(np.linalg.norm(seg, axis=-1), 1e-12)
        frac = (s_arr - self.cumlen[idx]) / seg_len
        pos = self.points[idx] + seg * frac[..., None]
        tangent = seg / seg_len[..., None]
        return pos, tangent


def left_normal(tangent: np.ndarray) -> np.ndarray:
    return np.stack([-tangent[..., 1], tangent[..., 0]], axis=-1)


@dataclass
class NearestStreet:
    """Per query point: distance to the nearest centre line and where on that street it is."""

    distance: np.ndarray
    street: np.ndarray  # street index
    s: np.ndarray  # arc length along the street
    lateral: np.ndarray  # signed offset, positive to the left of the street direction
    clearance: np.ndarray  # min over streets of (distance - outer edge): < 0 means on a road/sidewalk


class StreetNetwork:
    def __init__(self, nodes: np.ndarray, streets: list[Street]) -> None:
        self.nodes = nodes
        self.streets = streets
        self.node_streets: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
        for st in streets:
            self.node_streets[st.node_a].append(st.id)
            self.node_streets[st.node_b].append(st.id)
        seg_a, seg_b, seg_street, seg_s0 = [], [], [], []
        for st in streets:
            seg_a.append(st.points[:-1])
            seg_b.append(st.points[1:])
            seg_street.append(np.full(len(st.points) - 1, st.id))
            seg_s0.append(st.cumlen[:-1])
        self.seg_a = np.concatenate(seg_a)
        self.seg_b = np.concatenate(seg_b)
        self.seg_street = np.concatenate(seg_street)
        self.seg_s0 = np.concatenate(seg_s0)
        self.half_width = np.array([s.half_width for s in streets])
        self.outer = np.array([s.outer for s in streets])
        mid = 0.5 * (self.seg_a + self.seg_b)
        self._seg_tree = cKDTree(mid)
        self._seg_half_len = 0.5 * np.linalg.norm(self.seg_b - self.seg_a, axis=1)
        self.max_outer = float(self.outer.max())
        self._clearance = {n: self._node_clearance(n) for n in self.node_streets}

    def degree(self, node: int) -> int:
        return len(self.node_streets[node])

    def _node_clearance(self, node: int) -> float:
        ids = self.node_streets[node]
        if len(ids) <= 1:
            return 0.0
        return max(self.streets[i].outer for i in ids) + 1.0

    def clearance(self, node: int) -> float:
        """Arc length from a node that belongs to the intersection (no markings, no objects)."""
        return self._clearance[node]

    def segments_near(self, centre: np.ndarray, radius: float) -> np.ndarray:
        reach = radius + float(self._seg_half_len.max())
        return np.asarray(self._seg_tree.query_ball_point(centre, reach), dtype=np.int64)

    def nearest(self, points: np.ndarray, segments: np.ndarray | None = None) -> NearestStreet:
        """Nearest street of each ``(P, 2)`` point (over ``segments``, default: those nearby)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if segments is None:
            lo, hi = p.min(axis=0), p.max(axis=0)
            segments = self.segments_near(
                0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo)) + self.max_outer + 2.0
            )
        n = len(p)
        best = np.full(n, np.inf)
        street = np.full(n, -1, dtype=np.int64)
        s = np.zeros(n)
        lateral = np.zeros(n)
        clearance = np.full(n, np.inf)
        for k in segments:
            a = self.seg_a[k]
            v = self.seg_b[k] - a
            length2 = float(v @ v)
            if length2 < 1e-12:
                continue
            d = p - a
            t = np.clip((d[:, 0] * v[0] + d[:, 1] * v[1]) / length2, 0.0, 1.0)
            diff = d - t[:, None] * v
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            sid = int(self.seg_street[k])
            np.minimum(clearance, dist - self.outer[sid], out=clearance)
            closer = dist < best
            if not closer.any():
                continue
            best[closer] = dist[closer]
            street[closer] = sid
            length = math.sqrt(length2)
            s[closer] = self.seg_s0[k] + t[closer] * length
            lateral[closer] = (v[0] * d[closer, 1] - v[1] * d[closer, 0]) / length
        return NearestStreet(best, street, s, lateral, clearance)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, step: float) -> np.ndarray:
    approx = np.linalg.norm(p1 - p0) + np.linalg.norm(p2 - p1)
    n = max(2, math.ceil(approx / step) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def build_street_network(scenario: Scenario, rng: np.random.Generator) -> StreetNetwork:
    cfg = scenario.town
    nx, ny = cfg.blocks_x + 1, cfg.blocks_y + 1
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")
    nodes = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(float) * cfg.block_size_m
    nodes -= nodes.mean(axis=0)
    nodes += rng.uniform(-cfg.node_jitter_m, cfg.node_jitter_m, nodes.shape)
    edges: list[tuple[int, int]] = []
    for j in range(ny):
        for i in range(nx):
            k = j * nx + i
            if i + 1 < nx:
                edges.append((k, k + 1))
            if j + 1 < ny:
                edges.append((k, k + nx))
    # Drop some streets, never disconnecting the network and never isolating a node.
    order = rng.permutation(len(edges))
    n_remove = round(cfg.removed_street_fraction * len(edges))
    kept = set(range(len(edges)))
    for e in order:
        if n_remove <= 0:
            break
        trial = kept - {int(e)}
        if _connected(len(nodes), [edges[i] for i in trial]):
            kept = trial
            n_remove -= 1
    streets: list[Street] = []
    used_names: set[str] = set()
    for new_id, e in enumerate(sorted(kept)):
        a, b = edges[e]
        p0, p2 = nodes[a], nodes[b]
        if rng.random() < cfg.curved_fraction:
            chord = p2 - p0
            normal = np.array([-chord[1], chord[0]]) / np.linalg.norm(chord)
            sagitta = rng.uniform(*cfg.curve_sagitta_m) * rng.choice([-1.0, 1.0])
            pts = _bezier(p0, 0.5 * (p0 + p2) + 2.0 * sagitta * normal, p2, 4.0)
        else:
            pts = np.stack([p0, p2])
        name = _street_name(rng, used_names)
        streets.append(
            Street(
                id=new_id,
                node_a=a,
                node_b=b,
                points=pts,
                half_width=0.5 * rng.uniform(*cfg.road_width_m),
                sidewalk=rng.uniform(*cfg.sidewalk_width_m),
                name=name,
                centre_dashes=bool(rng.random() < 0.8),
                edge_lines=bool(rng.random() < 0.5),
                tone=float(rng.uniform(0.85, 1.15)),
            )
        )
    return StreetNetwork(nodes, streets)


def _street_name(rng: np.random.Generator, used: set[str]) -> str:
    for _ in range(100):
        name = f"{rng.choice(tex.STREET_WORDS)} {rng.choice(tex.NAME_WORDS)}"
        if name not in used:
            used.add(name)
            return name
    name = f"RUE {len(used) + 1}"
    used.add(name)
    return name


def _connected(n_nodes: int, edges: Sequence[tuple[int, int]]) -> bool:
    adjacency: dict[int, list[int]] = {i: [] for i in range(n_nodes)}
    for a, b in edges:
        adjacency[a].append(b)
        adjacency[b].append(a)
    seen = {0}
    stack = [0]
    while stack:
        for nxt in adjacency[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return len(seen) == n_nodes


# -------------------------------------------------------------------------------------- quads
@dataclass(frozen=True)
class TextureSpec:
    """How to generate a texture: a generator name, the surface size and a seed."""

    kind: str
    width_m: float
    height_m: float
    seed: int
    params: tuple[object, ...] = ()


class QuadSet:
    """Column-wise storage of the town's static quads (see the module docstring)."""

    def __init__(self) -> None:
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int, int, bool, int]] = []
        self.textures: list[TextureSpec] = []

    def add(
        self,
        origin: np.ndarray,
        axis_s: np.ndarray,
        axis_t: np.ndarray,
        width: float,
        height: float,
        texture: TextureSpec,
        kind: QuadKind,
        epochs: int = EPOCH_BOTH,
        two_sided: bool = False,
    ) -> None:
        self.textures.append(texture)
        self._rows.append(
            (
                np.asarray(origin, float),
                np.asarray(axis_s, float),
                np.asarray(axis_t, float),
                float(width),
                float(height),
                len(self.textures) - 1,
                int(kind),
                bool(two_sided),
                int(epochs),
            )
        )

    def freeze(self) -> None:
        rows = self._rows
        if not rows:
            raise SimError("the town has no surfaces")
        self.origin = np.stack([r[0] for r in rows])
        self.axis_s = np.stack([r[1] for r in rows])
        self.axis_t = np.stack([r[2] for r in rows])
        self.size = np.array([[r[3], r[4]] for r in rows])
        self.texture = np.array([r[5] for r in rows], dtype=np.int64)
        self.kind = np.array([r[6] for r in rows], dtype=np.int8)
        self.two_sided = np.array([r[7] for r in rows], dtype=bool)
        self.epochs = np.array([r[8] for r in rows], dtype=np.uint8)
        self.normal = np.cross(self.axis_s, self.axis_t)
        self.centre = self.origin + 0.5 * (self.axis_s * self.size[:, :1] + self.axis_t * self.size[:, 1:])
        self.radius = 0.5 * np.linalg.norm(self.size, axis=1)
        self._tree = cKDTree(self.centre[:, :2])
        self.max_radius = float(self.radius.max())
        self._rows = []

    def __len__(self) -> int:
        return len(self.texture)

    def near(self, xy: np.ndarray, radius: float) -> np.ndarray:
        """Indices of quads that may reach within ``radius`` of ``xy`` (horizontal distance)."""
        return np.asarray(
            self._tree.query_ball_point(np.asarray(xy, float)[:2], radius + self.max_radius), dtype=np.int64
        )


def wall_axes(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Axes of a vertical wall from ground point p0 to p1 (outward normal to the right of p0->p1)."""
    d = np.array([p1[0] - p0[0], p1[1] - p0[1], 0.0])
    length = float(np.linalg.norm(d))
    return d / max(length, 1e-12), UP.copy(), length


@dataclass(frozen=True)
class Building:
    footprint: np.ndarray  # (4, 2) counter-clockwise, corner 0->1 is the street front
    height: float
    style: tex.FacadeStyle
    street: int


@dataclass(frozen=True)
class Box:
    """A vehicle-like box: centre on the ground, yaw, dimensions."""

    centre: np.ndarray
    yaw: float
    length: float
    width: float
    height: float


# ----------------------------------------------------------------------------------- the town
class Town:
    """Streets, static quads and lazily generated textures of one scenario and seed.

    Build it with :func:`build_town`; pass the epochs' camera paths so occluders keep clear of them.
    """

    def __init__(
        self, scenario: Scenario, seed: int, network: StreetNetwork, cache_bytes: int = 768 << 20
    ) -> None:
        self.scenario = scenario
        self.seed = int(seed)
        self.network = network
        self.quads = QuadSet()
        self.buildings: list[Building] = []
        self._cache: OrderedDict[tuple[object, ...], tex.TexturePyramid | np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self.cache_limit = int(cache_bytes)
        lo = network.nodes.min(axis=0) - network.max_outer - 60.0
        hi = network.nodes.max(axis=0) + network.max_outer + 60.0
        self.ground_origin = np.floor(lo / GROUND_CELL_M) * GROUND_CELL_M
        self.ground_cells = np.ceil((hi - self.ground_origin) / GROUND_CELL_M).astype(int)
        self._ground_base: dict[str, tuple[list[np.ndarray], float]] = {}  # material -> (pyramid, texels/m)

    # -------------------------------------------------------------------- texture cache
    @property
    def cache_nbytes(self) -> int:
        """Bytes of textures held in the LRU cache (bounded by ``cache_limit``)."""
        return self._cache_bytes

    def _cached(self, key: tuple[object, ...], make: Callable[[], CachedT]) -> CachedT:
        if key in self._cache:
            self._cache.move_to_end(key)
            return cast(CachedT, self._cache[key])
        value = make()
        size = int(value.nbytes)
        self._cache[key] = value
        self._cache_bytes += size
        while self._cache_bytes > self.cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= int(getattr(old, "nbytes", 0))
        return value

    def quad_texture(self, quad: int) -> tex.TexturePyramid:
        spec = self.quads.textures[int(self.quads.texture[quad])]
        return self._cached(
            ("quad", int(self.quads.texture[quad])), lambda: _make_pyramid(spec, self.scenario)
        )

    def ground_texture(self, cell: int, level: int) -> np.ndarray:
        """Padded BGRA tile of ground cell ``cell`` at mip ``level`` (see :func:`ground_cell_geometry`)."""
        return self._cached(("ground", int(cell), int(level)), lambda: self._make_ground_tile(cell, level))

    # -------------------------------------------------------------------- ground
    def ground_cells_near(self, xy: np.ndarray, radius: float) -> np.ndarray:
        """Linear indices of ground cells intersecting the disc of ``radius`` around ``xy``."""
        nx, ny = self.ground_cells
        lo = np.floor((np.asarray(xy[:2]) - radius - self.ground_origin) / GROUND_CELL_M).astype(int)
        hi = np.floor((np.asarray(xy[:2]) + radius - self.ground_origin) / GROUND_CELL_M).astype(int)
        lo = np.clip(lo, 0, [nx - 1, ny - 1])
        hi = np.clip(hi, 0, [nx - 1, ny - 1])
        gx, gy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="xy")
        ix, iy = gx.ravel(), gy.ravel()
        cx = self.ground_origin[0] + (ix + 0.5) * GROUND_CELL_M
        cy = self.ground_origin[1] + (iy + 0.5) * GROUND_CELL_M
        keep = np.hypot(cx - xy[0], cy - xy[1]) <= radius + GROUND_CELL_M * 0.7072
        return (iy * nx + ix)[keep]

    def ground_cell_geometry(self, cells: np.ndarray) -> tuple[np.ndarray, float]:
        """Origins ``(N, 3)`` (south-west corner incl. margin) and the common side length."""
        nx = self.ground_cells[0]
        ix, iy = cells % nx, cells // nx
        origin = np.zeros((len(cells), 3))
        origin[:, 0] = self.ground_origin[0] + ix * GROUND_CELL_M - GROUND_MARGIN_M
        origin[:, 1] = self.ground_origin[1] + iy * GROUND_CELL_M - GROUND_MARGIN_M
        return origin, GROUND_CELL_M + 2 * GROUND_MARGIN_M

    def ground_level_count(self) -> int:
        base = self.scenario.town.ground_px_per_m * GROUND_CELL_M
        return max(1, math.floor(math.log2(base / 4.0)) + 1)

    def _base_texture(self, name: str, level_px_per_m: float) -> tuple[np.ndarray, float]:
        """A ground base material at about ``level_px_per_m`` (grey float32, mean 1) and its density."""
        if name not in self._ground_base:
            rng = np.random.default_rng(seed_for(self.seed, 77, len(name)))
            if name == "asphalt":
                img = tex.load_asset("gravel")[:, :, 0].astype(np.float32)
                img = 0.6 * (img / img.mean()) + 0.4 * (1.0 + 0.25 * tex.value_noise(rng, 512, 512, 64.0, 3))
                density = 512 / 3.0
            elif name == "grass":
                img = tex.load_asset("grass")[:, :, 0].astype(np.float32)
                img = img / img.mean()
                density = 512 / 2.5
            else:  # concrete
                img = (1.0 + 0.12 * tex.value_noise(rng, 512, 512, 24.0, 4)).astype(np.float32)
                density = 512 / 4.0
            levels: list[np.ndarray] = [np.ascontiguousarray(img, dtype=np.float32)]
            while levels[-1].shape[0] > 8:
                levels.append(np.asarray(cv2.pyrDown(levels[-1])))
            self._ground_base[name] = (levels, density)
        pyramid, density = self._ground_base[name]
        level = int(
            np.clip(math.floor(math.log2(max(density / max(level_px_per_m, 1e-6), 1.0))), 0, len(pyramid) - 1)
        )
        return pyramid[level], density / 2**level

    def _make_ground_tile(self, cell: int, level: int) -> np.ndarray:
        origin, side = self.ground_cell_geometry(np.array([cell]))
        ppm0 = self.scenario.town.ground_px_per_m
        n = max(4, round(side * ppm0 / 2**level))
        # Draw at twice the resolution (except at full resolution) and average: no aliased markings.
        oversample = 1 if level == 0 else 2
        m = n * oversample
        step = side / m
        xs = origin[0, 0] + (np.arange(m) + 0.5) * step
        ys = origin[0, 1] + side - (np.arange(m) + 0.5) * step  # row 0 is the north edge
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
        near = self._street_fields(xs, ys)
        img = self._ground_colour(pts, near, 1.0 / step).reshape(m, m, 3)
        if oversample > 1:
            img = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)
        bgra = cv2.cvtColor(tex.to_u8(img), cv2.COLOR_BGR2BGRA)
        padded = cv2.copyMakeBorder(bgra, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        padded[0, :, 3] = padded[-1, :, 3] = 0
        padded[:, 0, 3] = padded[:, -1, 3] = 0
        return padded

    def _sample_base(self, name: str, pts: np.ndarray, px_per_m: float) -> np.ndarray:
        img, density = self._base_texture(name, px_per_m)
        h, w = img.shape
        # remap wants maps under 32767 pixels a side: lay the points out in rows of 1024.
        n = len(pts)
        rows = -(-n // 1024)
        mx = np.zeros(rows * 1024, np.float32)
        my = np.zeros(rows * 1024, np.float32)
        mx[:n] = np.mod(pts[:, 0] * density, w)
        my[:n] = np.mod(-pts[:, 1] * density, h)
        out = cv2.remap(
            img, mx.reshape(rows, 1024), my.reshape(rows, 1024), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
        )
        return out.reshape(-1)[:n]

    def _street_fields(self, xs: np.ndarray, ys: np.ndarray) -> NearestStreet:
        """:meth:`StreetNetwork.nearest` on the grid ``xs x ys``, fast: the smooth fields (distance,
        arc length, lateral offset) are computed on a 0.25 m grid and interpolated, except near the
        boundaries between streets, where they jump and every point is computed exactly."""
        net = self.network
        h = FIELD_STEP_M
        x0, y0 = min(xs[0], xs[-1]) - h, max(ys[0], ys[-1]) + h  # coarse row 0 is the north edge
        nxc = math.ceil((abs(xs[-1] - xs[0]) + 2 * h) / h) + 1
        nyc = math.ceil((abs(ys[-1] - ys[0]) + 2 * h) / h) + 1
        cx = x0 + np.arange(nxc) * h
        cy = y0 - np.arange(nyc) * h
        cgx, cgy = np.meshgrid(cx, cy)
        coarse = net.nearest(np.stack([cgx.ravel(), cgy.ravel()], axis=1))
        shape = (nyc, nxc)
        sid = coarse.street.reshape(shape)
        boundary = np.zeros(shape, np.uint8)
        boundary[:, :-1] |= sid[:, :-1] != sid[:, 1:]
        boundary[:, 1:] |= sid[:, :-1] != sid[:, 1:]
        boundary[:-1, :] |= sid[:-1, :] != sid[1:, :]
        boundary[1:, :] |= sid[:-1, :] != sid[1:, :]
        map_x = np.broadcast_to(((xs - x0) / h).astype(np.float32)[None, :], (len(ys), len(xs))).copy()
        map_y = np.broadcast_to(((y0 - ys) / h).astype(np.float32)[:, None], (len(ys), len(xs))).copy()

        def up(field: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
            f = field.reshape(shape).astype(np.float32)
            return cv2.remap(f, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE).ravel()

        fine = NearestStreet(
            distance=up(coarse.distance).astype(np.float64),
            street=np.rint(up(coarse.street.astype(np.float32), cv2.INTER_NEAREST)).astype(np.int64),
            s=up(coarse.s).astype(np.float64),
            lateral=up(coarse.lateral).astype(np.float64),
            clearance=up(coarse.clearance).astype(np.float64),
        )
        exact = up(boundary.astype(np.float32)) > 0
        if exact.any():
            gx, gy = np.meshgrid(xs, ys)
            pts = np.stack([gx.ravel()[exact], gy.ravel()[exact]], axis=1)
            sharp = net.nearest(pts)
            for name in ("distance", "street", "s", "lateral", "clearance"):
                getattr(fine, name)[exact] = getattr(sharp, name)
        return fine

    def _ground_colour(self, pts: np.ndarray, near: NearestStreet, px_per_m: float) -> np.ndarray:
        """BGR float colours of ground points: road, markings, kerb, sidewalk or verge."""
        net = self.network
        n = len(pts)
        colour = np.empty((n, 3), np.float32)
        sid = np.maximum(near.street, 0)
        half = net.half_width[sid]
        outer = net.outer[sid]
        dist = near.distance
        road = dist < half
        kerb = (dist >= half) & (dist < half + KERB_M)
        walk = (dist >= half + KERB_M) & (dist < outer)
        verge = ~(road | kerb | walk)
        tone = np.array([s.tone for s in net.streets], np.float32)[sid]
        asphalt = self._sample_base("asphalt", pts, px_per_m)
        concrete = self._sample_base("concrete", pts, px_per_m)
        grass = self._sample_base("grass", pts, px_per_m)
        colour[:] = (asphalt * tone)[:, None] * np.array([72, 72, 70], np.float32)
        # Markings.
        paint = self._markings(near, sid, half)
        colour[paint] = (0.8 + 0.2 * asphalt[paint, None]) * np.array([225, 228, 228], np.float32)
        # Kerb stones with joints every metre.
        kerb_joint = np.mod(near.s, 1.0) < 0.02
        colour[kerb] = concrete[kerb, None] * np.array([170, 175, 178], np.float32)
        colour[kerb & kerb_joint] *= 0.7
        # Sidewalk slabs aligned with the street, each slab a slightly different shade.
        across = np.abs(near.lateral) - half - KERB_M
        slab_i = np.floor(near.s / 0.6)
        slab_j = np.floor(across / 0.6)
        shade = np.mod(np.sin(slab_i * 12.9898 + slab_j * 78.233 + sid * 3.1) * 43758.5453, 1.0)
        joint = (np.mod(near.s, 0.6) < 0.025) | (np.mod(across, 0.6) < 0.025)
        walk_colour = concrete[:, None] * (0.9 + 0.2 * shade[:, None]) * np.array([150, 160, 168], np.float32)
        walk_colour[joint] *= 0.75
        colour[walk] = walk_colour[walk]
        colour[verge] = grass[verge, None] * np.array([45, 110, 80], np.float32)
        return colour

    def _markings(self, near: NearestStreet, sid: np.ndarray, half: np.ndarray) -> np.ndarray:
        net = self.network
        lengths = np.array([s.length for s in net.streets])[sid]
        clear_a = np.array([net.clearance(s.node_a) for s in net.streets])[sid]
        clear_b = np.array([net.clearance(s.node_b) for s in net.streets])[sid]
        deg_a = np.array([net.degree(s.node_a) for s in net.streets])[sid]
        deg_b = np.array([net.degree(s.node_b) for s in net.streets])[sid]
        dashes = np.array([s.centre_dashes for s in net.streets])[sid]
        edges = np.array([s.edge_lines for s in net.streets])[sid]
        s, lat = near.s, near.lateral
        on_road = near.distance < half
        inside = (s > clear_a + 4.0) & (s < lengths - clear_b - 4.0)
        paint = on_road & inside & dashes & (np.abs(lat) < 0.07) & (np.mod(s - clear_a, 8.0) < 3.0)
        paint |= on_road & inside & edges & (np.abs(np.abs(lat) - (half - 0.35)) < 0.07)
        zebra = (np.mod(lat + 50.0, 1.0) < 0.5) & (np.abs(lat) < half - 0.3)
        cross_a = (deg_a >= 3) & (s > clear_a) & (s < clear_a + 3.0)
        cross_b = (deg_b >= 3) & (s < lengths - clear_b) & (s > lengths - clear_b - 3.0)
        paint |= on_road & zebra & (cross_a | cross_b)
        stop_a = (deg_a >= 3) & (s > clear_a + 3.4) & (s < clear_a + 3.7) & (lat > 0) & (lat < half - 0.3)
        stop_b = (
            (deg_b >= 3)
            & (s < lengths - clear_b - 3.4)
            & (s > lengths - clear_b - 3.7)
            & (lat < 0)
            & (lat > -half + 0.3)
        )
        paint |= on_road & (stop_a | stop_b)
        return paint


def _make_pyramid(spec: TextureSpec, scenario: Scenario) -> tex.TexturePyramid:
    rng = np.random.default_rng(spec.seed)
    ppm = scenario.town.texture_px_per_m
    if spec.kind == "facade":
        style, front, shops, number = cast(
            tuple[tex.FacadeStyle, bool, tuple[str, ...], int | None], spec.params
        )
        image = tex.facade_texture(rng, style, spec.width_m, spec.height_m, ppm, front, shops, number)
    elif spec.kind == "poster":
        image = tex.poster_texture(rng, spec.width_m, spec.height_m, ppm)
    elif spec.kind.startswith("vehicle_"):
        length, width, height = cast(tuple[float, float, float], spec.params)
        faces = tex.vehicle_textures(rng, length, width, height, ppm)
        image = faces[spec.kind.removeprefix("vehicle_")]
    elif spec.kind == "pedestrian":
        image = tex.pedestrian_texture(rng, spec.width_m, spec.height_m, ppm)
    elif spec.kind == "crown":
        image = tex.tree_crown_texture(rng, spec.width_m, spec.height_m, ppm)
    elif spec.kind == "bark":
        image = tex.bark_texture(rng, spec.width_m, spec.height_m, ppm)
    elif spec.kind == "metal":
        image = tex.metal_texture(rng, spec.width_m, spec.height_m, ppm)
    elif spec.kind == "sign":
        kind, text = spec.params
        image = tex.sign_texture(rng, str(kind), str(text), spec.width_m, spec.height_m)
    else:
        raise SimError(f"unknown texture kind {spec.kind!r}")
    return tex.make_pyramid(image, spec.width_m, spec.height_m)


# ---------------------------------------------------------------------------------- placement
def _rect_footprint(front0: np.ndarray, front1: np.ndarray, depth: float) -> np.ndarray:
    """Counter-clockwise rectangle with front edge ``front0 -> front1``, extending ``depth`` metres
    to the left of that edge (the caller orients the edge so that the left is away from the street).
    """
    d = front1 - front0
    d = d / np.linalg.norm(d)
    inward = np.array([-d[1], d[0]])
    return np.stack([front0, front1, front1 + inward * depth, front0 + inward * depth])


def _polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return area > 0.5


def _place_buildings(town: Town, rng: np.random.Generator) -> None:
    cfg = town.scenario.town
    net = town.network
    placed: list[np.ndarray] = []
    placed_centres: list[np.ndarray] = []
    number = 1
    for st in net.streets:
        clear_a, clear_b = net.clearance(st.node_a), net.clearance(st.node_b)
        for side in (-1.0, 1.0):
            s = clear_a + 0.5
            while s < st.length - clear_b - 4.0:
                frontage = float(rng.uniform(*cfg.building_frontage_m))
                s_end = min(s + frontage, st.length - clear_b)
                if s_end - s < 6.0:
                    break
                if rng.random() < cfg.building_gap_probability:
                    s = s_end + float(rng.uniform(1.0, 6.0))
                    continue
                setback = float(rng.uniform(*cfg.building_setback_m))
                (p0, p1), (t0, t1) = st.point_at(np.array([s, s_end]))
                offset = st.outer + setback + 0.3
                q0 = p0 + side * left_normal(t0) * offset
                q1 = p1 + side * left_normal(t1) * offset
                # Interior to the left of the front edge: walk the front edge so the street is on the right.
                front0, front1 = (q0, q1) if side > 0 else (q1, q0)
                depth = float(rng.uniform(*cfg.building_depth_m))
                foot = _rect_footprint(front0, front1, depth)
                s = s_end + float(rng.uniform(0.0, 0.3))
                if not _footprint_ok(net, foot, placed, placed_centres):
                    continue
                floors = int(rng.integers(cfg.building_floors[0], cfg.building_floors[1] + 1))
                style = tex.random_facade_style(rng)
                height = style.ground_floor_m + floors * style.floor_m + float(rng.uniform(0.3, 1.2))
                building = Building(foot, height, style, st.id)
                placed.append(foot)
                placed_centres.append(foot.mean(axis=0))
                _add_building_quads(town, building, len(town.buildings), number, rng)
                town.buildings.append(building)
                number += int(rng.integers(1, 3))


def _footprint_ok(
    net: StreetNetwork, foot: np.ndarray, placed: list[np.ndarray], centres: list[np.ndarray]
) -> bool:
    # Sample the footprint (corners, edge points, centre) against every street's sidewalk edge.
    t = np.linspace(0.0, 1.0, 6)[:, None]
    samples = [foot[i] + t * (foot[(i + 1) % 4] - foot[i]) for i in range(4)]
    pts = np.concatenate([*samples, foot.mean(axis=0)[None]])
    if np.any(net.nearest(pts).clearance < 0.25):
        return False
    if centres:
        c = foot.mean(axis=0)
        dists = np.linalg.norm(np.asarray(centres) - c, axis=1)
        for k in np.nonzero(dists < 40.0)[0]:
            if _polygons_overlap(foot, placed[int(k)]):
                return False
    return True


def _add_building_quads(town: Town, b: Building, index: int, number: int, rng: np.random.Generator) -> None:
    nz = town.scenario.nuisances
    pr = town.scenario.town
    shop = rng.random() < 0.6
    for wall in range(4):
        p0 = np.append(b.footprint[wall], 0.0)
        p1 = np.append(b.footprint[(wall + 1) % 4], 0.0)
        # The footprint is counter-clockwise, so the right of p0->p1 (the quad normal) is outside.
        axis_s, axis_t, width = wall_axes(p0, p1)
        origin = p0
        front = wall == 0
        shops: tuple[str, ...] = ()
        if front and shop:
            n_shops = max(1, int(width // 7.0))
            shops = tuple(_shop_name(rng) for _ in range(n_shops))
        seed = seed_for(town.seed, 1, index, wall)
        spec = TextureSpec(
            "facade", width, b.height, seed, (b.style, front, shops, number if front else None)
        )
        if front and shops and rng.random() < nz.shop_sign_change_fraction:
            new_shops = tuple(_shop_name(rng) for _ in shops)
            spec_new = TextureSpec("facade", width, b.height, seed, (b.style, front, new_shops, number))
            town.quads.add(origin, axis_s, axis_t, width, b.height, spec, QuadKind.FACADE, EPOCH_CAPTURE)
            town.quads.add(origin, axis_s, axis_t, width, b.height, spec_new, QuadKind.FACADE, EPOCH_DRIVE)
        else:
            town.quads.add(origin, axis_s, axis_t, width, b.height, spec, QuadKind.FACADE)
        # Posters on the front wall, a few centimetres proud of it.
        if front:
            normal = np.cross(axis_s, axis_t)
            n_posters = rng.poisson(pr.posters_per_100m * width / 100.0)
            for k in range(int(n_posters)):
                pw, ph = (1.2, 1.75) if rng.random() < 0.7 else (3.0, 2.2)
                if width < pw + 1.0:
                    continue
                s0 = float(rng.uniform(0.5, width - pw - 0.5))
                z0 = (
                    float(rng.uniform(0.6, 1.2))
                    if ph < 2
                    else float(rng.uniform(4.5, max(4.6, b.height - ph - 1.0)))
                )
                if z0 + ph > b.height - 0.3:
                    continue
                o = origin + axis_s * s0 + axis_t * z0 + normal * 0.04
                seed_a = seed_for(town.seed, 2, index, k)
                spec_a = TextureSpec("poster", pw, ph, seed_a)
                if rng.random() < nz.poster_change_fraction:
                    spec_b = TextureSpec("poster", pw, ph, seed_for(town.seed, 3, index, k))
                    town.quads.add(o, axis_s, axis_t, pw, ph, spec_a, QuadKind.POSTER, EPOCH_CAPTURE)
                    town.quads.add(o, axis_s, axis_t, pw, ph, spec_b, QuadKind.POSTER, EPOCH_DRIVE)
                else:
                    town.quads.add(o, axis_s, axis_t, pw, ph, spec_a, QuadKind.POSTER)


def _shop_name(rng: np.random.Generator) -> str:
    word = str(rng.choice(tex.SHOP_WORDS))
    roll = rng.random()
    if roll < 0.4:
        return f"{word} {rng.choice(tex.NAME_WORDS)}"
    if roll < 0.6:
        return f"{rng.choice(tex.NAME_WORDS)} {word}"
    return word


def add_box(town: Town, box: Box, seed: int, kind: QuadKind, epochs: int, spec_kind: str = "vehicle") -> None:
    """Four sides and a roof of an oriented box (vehicles, trunks, poles)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    fwd = np.array([c, s, 0.0])
    left = np.array([-s, c, 0.0])
    half_l, half_w = 0.5 * box.length, 0.5 * box.width
    base = np.append(box.centre[:2], box.centre[2] if len(box.centre) > 2 else 0.0)
    corners = [
        base + fwd * half_l - left * half_w,
        base + fwd * half_l + left * half_w,
        base - fwd * half_l + left * half_w,
        base - fwd * half_l - left * half_w,
    ]
    params = (box.length, box.width, box.height)
    faces = ("front", "side", "back", "side")
    for i in range(4):
        p_from, p_to = corners[i], corners[(i + 1) % 4]  # counter-clockwise: normals point outwards
        axis_s, axis_t, width = wall_axes(p_from, p_to)
        if spec_kind == "vehicle":
            spec = TextureSpec(f"vehicle_{faces[i]}", width, box.height, seed, params)
        else:
            spec = TextureSpec(spec_kind, width, box.height, seed + i)
        town.quads.add(p_from, axis_s, axis_t, width, box.height, spec, kind, epochs)
    if spec_kind == "vehicle":
        roof_origin = base - fwd * half_l - left * half_w + UP * box.height
        spec = TextureSpec("vehicle_roof", box.length, box.width, seed, params)
        town.quads.add(roof_origin, fwd, left, box.length, box.width, spec, kind, epochs)


def _billboard(
    town: Town,
    centre_bottom: np.ndarray,
    facing_yaw: float,
    width: float,
    height: float,
    spec: TextureSpec,
    kind: QuadKind,
    epochs: int,
) -> None:
    n = np.array([math.cos(facing_yaw), math.sin(facing_yaw), 0.0])
    axis_s = np.cross(UP, n)
    origin = centre_bottom - axis_s * width / 2
    town.quads.add(origin, axis_s, UP.copy(), width, height, spec, kind, epochs, two_sided=True)


class PathClearance:
    """Keeps occluders clear of the epochs' camera paths (points sampled along them)."""

    def __init__(self, capture_points: np.ndarray | None, drive_points: np.ndarray | None) -> None:
        self._trees = {
            EPOCH_CAPTURE: cKDTree(capture_points[:, :2])
            if capture_points is not None and len(capture_points)
            else None,
            EPOCH_DRIVE: cKDTree(drive_points[:, :2])
            if drive_points is not None and len(drive_points)
            else None,
        }

    def clear(self, epoch: int, xy: np.ndarray, radius: float) -> bool:
        tree = self._trees[epoch]
        if tree is None:
            return True
        dist, _ = tree.query(np.asarray(xy[:2], float))
        return bool(dist > radius)


def _place_street_objects(town: Town, rng: np.random.Generator, clearance: PathClearance) -> None:
    cfg = town.scenario.town
    nz = town.scenario.nuisances
    net = town.network
    obj = 0
    for st in net.streets:
        clear_a, clear_b = net.clearance(st.node_a), net.clearance(st.node_b)
        usable = st.length - clear_a - clear_b - 2.0
        if usable <= 2.0:
            continue
        for side in (-1.0, 1.0):

            def spots(
                rate_per_100m: float, lo: float = clear_a + 1.0, hi: float = st.length - clear_b - 1.0
            ) -> np.ndarray:
                count = rng.poisson(rate_per_100m * (hi - lo) / 100.0)
                return np.sort(rng.uniform(lo, hi, count))

            # Trees and lamp posts near the kerb, traffic signs facing the traffic on that side.
            for s in spots(cfg.trees_per_100m):
                pos, tan = st.point_at(s)
                xy = pos + side * left_normal(tan) * (st.half_width + 0.7)
                obj += 1
                _add_tree(town, xy, seed_for(town.seed, 4, obj), rng)
            for s in spots(cfg.poles_per_100m):
                pos, tan = st.point_at(s)
                xy = pos + side * left_normal(tan) * (st.half_width + 0.45)
                obj += 1
                height = float(rng.uniform(5.0, 7.5))
                add_box(
                    town,
                    Box(np.append(xy, 0.0), math.atan2(tan[1], tan[0]), 0.16, 0.16, height),
                    seed_for(town.seed, 5, obj),
                    QuadKind.POLE,
                    EPOCH_BOTH,
                    "metal",
                )
                head = np.append(xy - side * left_normal(tan) * 0.6, height - 0.3)
                add_box(
                    town,
                    Box(head, math.atan2(tan[1], tan[0]) + math.pi / 2, 1.3, 0.3, 0.25),
                    seed_for(town.seed, 6, obj),
                    QuadKind.POLE,
                    EPOCH_BOTH,
                    "metal",
                )
            for s in spots(cfg.signs_per_100m):
                pos, tan = st.point_at(s)
                xy = pos + side * left_normal(tan) * (st.half_width + 0.4)
                obj += 1
                add_box(
                    town,
                    Box(np.append(xy, 0.0), 0.0, 0.07, 0.07, 2.9),
                    seed_for(town.seed, 7, obj),
                    QuadKind.POLE,
                    EPOCH_BOTH,
                    "metal",
                )
                kind = str(rng.choice(["speed", "warning", "mandatory"]))
                text = str(rng.choice(["30", "50", "20", "70"]))
                size = 0.65
                # Traffic on this side drives along -side * tangent... facing it means normal against travel.
                travel = tan if side < 0 else -tan
                facing = math.atan2(-travel[1], -travel[0])
                n = np.array([math.cos(facing), math.sin(facing), 0.0])
                axis_s = np.cross(UP, n)
                origin = np.append(xy, 2.2) - axis_s * size / 2 + n * 0.05
                town.quads.add(
                    origin,
                    axis_s,
                    UP.copy(),
                    size,
                    size,
                    TextureSpec("sign", size, size, seed_for(town.seed, 8, obj), (kind, text)),
                    QuadKind.SIGN,
                )
            # Parked vehicles and people, drawn separately for each epoch.
            for epoch in (EPOCH_CAPTURE, EPOCH_DRIVE):
                for s in spots(nz.vehicles_per_100m * 0.5):
                    pos, tan = st.point_at(s)
                    parked = rng.random() < 0.7
                    lateral = (st.half_width - 1.05) if parked else 1.75
                    length = (
                        float(rng.uniform(3.8, 5.0)) if rng.random() < 0.85 else float(rng.uniform(5.5, 7.0))
                    )
                    width = float(rng.uniform(1.7, 1.95))
                    height = float(rng.uniform(1.4, 1.6)) if length < 5.2 else float(rng.uniform(2.2, 2.8))
                    xy = pos + side * left_normal(tan) * lateral
                    if not clearance.clear(
                        epoch, xy, 0.5 * width + 1.3 + (0.5 * length if epoch == EPOCH_CAPTURE else 0.0)
                    ):
                        continue
                    yaw = (
                        math.atan2(tan[1], tan[0])
                        + (0.0 if side < 0 else math.pi)
                        + float(rng.normal(0, 0.02))
                    )
                    obj += 1
                    add_box(
                        town,
                        Box(np.append(xy, 0.0), yaw, length, width, height),
                        seed_for(town.seed, 9, obj),
                        QuadKind.VEHICLE,
                        epoch,
                    )
                for s in spots(nz.pedestrians_per_100m * 0.5):
                    pos, tan = st.point_at(s)
                    lateral = st.half_width + float(rng.uniform(0.6, max(0.7, st.sidewalk - 0.3)))
                    xy = pos + side * left_normal(tan) * lateral
                    height = float(rng.uniform(1.55, 1.92))
                    width = height * 0.33
                    obj += 1
                    facing = float(rng.uniform(-math.pi, math.pi))
                    spec = TextureSpec("pedestrian", width, height, seed_for(town.seed, 10, obj))
                    _billboard(
                        town, np.append(xy, 0.0), facing, width, height, spec, QuadKind.PEDESTRIAN, epoch
                    )
        # Street-name plates at the street's ends, on poles at the corner, readable from the street.
        for end, node in ((0.0, st.node_a), (st.length, st.node_b)):
            if net.degree(node) < 3:
                continue
            s = clear_a - 0.5 if end == 0.0 else st.length - clear_b + 0.5
            pos, tan = st.point_at(s)
            xy = pos + left_normal(tan) * (st.half_width + 0.5)
            obj += 1
            add_box(
                town,
                Box(np.append(xy, 0.0), 0.0, 0.07, 0.07, 3.0),
                seed_for(town.seed, 11, obj),
                QuadKind.POLE,
                EPOCH_BOTH,
                "metal",
            )
            spec = TextureSpec("sign", 1.0, 0.28, seed_for(town.seed, 12, obj), ("street_name", st.name))
            normal = np.append(-left_normal(tan), 0.0)
            for sign_dir in (1.0, -1.0):
                n = normal * sign_dir
                axis_s = np.cross(UP, n)
                origin = np.append(xy, 2.6) - axis_s * 0.5 + n * 0.05
                town.quads.add(origin, axis_s, UP.copy(), 1.0, 0.28, spec, QuadKind.SIGN)


def _add_tree(town: Town, xy: np.ndarray, seed: int, rng: np.random.Generator) -> None:
    trunk_h = float(rng.uniform(2.3, 3.5))
    crown = float(rng.uniform(3.0, 5.5))
    add_box(
        town,
        Box(np.append(xy, 0.0), float(rng.uniform(0, math.pi)), 0.28, 0.28, trunk_h + crown * 0.3),
        seed,
        QuadKind.TREE,
        EPOCH_BOTH,
        "bark",
    )
    yaw0 = float(rng.uniform(0, math.pi))
    for k in range(2):
        spec = TextureSpec("crown", crown, crown * 0.9, seed + 100 + k)
        _billboard(
            town,
            np.append(xy, trunk_h - 0.2),
            yaw0 + k * math.pi / 2,
            crown,
            crown * 0.9,
            spec,
            QuadKind.TREE,
            EPOCH_BOTH,
        )


def build_network(scenario: Scenario, seed: int) -> StreetNetwork:
    """The street network alone (deterministic for a seed)."""
    return build_street_network(scenario, np.random.default_rng(seed_for(seed, 100)))


def build_town(
    scenario: Scenario,
    seed: int,
    network: StreetNetwork | None = None,
    capture_points: np.ndarray | None = None,
    drive_points: np.ndarray | None = None,
    cache_bytes: int = 768 << 20,
) -> Town:
    """Build the town of ``scenario`` for ``seed``.

    ``capture_points`` / ``drive_points`` (``(N, 2+)`` map positions along the panorama and vehicle
    paths) keep vehicles out of the way of the cameras of each epoch; without them occluders are
    placed regardless. :func:`geoloc_ros.sim.generate.plan` computes both.
    """
    net = network if network is not None else build_network(scenario, seed)
    town = Town(scenario, seed, net, cache_bytes)
    _place_buildings(town, np.random.default_rng(seed_for(seed, 101)))
    _place_street_objects(
        town, np.random.default_rng(seed_for(seed, 102)), PathClearance(capture_points, drive_points)
    )
    town.quads.freeze()
    logger.info(
        "town: %d streets, %d buildings, %d quads", len(net.streets), len(town.buildings), len(town.quads)
    )
    return town
