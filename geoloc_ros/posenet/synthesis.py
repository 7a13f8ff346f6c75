"""Training views where the car drives: map panoramas re-projected to on-board camera poses.

A map bundle's views are cut at the panorama centres (2.5 m high, on the street's centre line) and
4 m along the street. The vehicle's camera is lower (about 1.5 m), in a lane beside the centre
line, and looks mostly along the street. This module renders, from the **map's panoramas and
their depth only** (never the drive), extra views at such poses:

- **along the streets**: on the segment between every pair of linked panoramas, at a uniformly
  drawn position, lateral offset (``lateral_range_m``, both lanes) and camera height above the
  ground (``camera_height_m`` ± jitter; the ground is each panorama's centre minus its
  ``camera_height_m``), looking along the street in either direction (``along_street_fraction``,
  ± ``along_street_yaw_jitter_deg``) or anywhere on the ring;
- **around each panorama** (intersections, where the vehicle turns): uniformly in a disc of
  ``panorama_radius_m``, any heading.

Each view is rendered from the nearer panorama with :func:`geoloc_ros.gis.virtual.render_virtual_view`
(depth-based forward warp, visibility-checked backward warp). Disoccluded pixels (what the
panorama could not see from its centre) are filled from the view rendered from the second panorama
(the segment's other end, or the nearest other panorama), and what neither saw is inpainted, so
the network never learns from black holes the drive frames do not have. A panorama without depth
(common in real GIS imagery) still shapes the streets, but its views are rendered from the nearest
panoramas that have depth (``synthesis.json`` lists it). Views whose camera would
stand inside a surface (the panorama's range towards it is too short) or that keep more than
``max_hole_ratio`` unknown pixels after compositing are dropped and counted.

**Where the views live.** They are not part of the map bundle (the bundle format belongs to the map
builder and serves both localizers); they are a PoseNet training artefact rendered from the
panorama set the bundle was built from (``sources.panorama_sets`` in its manifest, or a given
folder), in the bundle's ``map`` frame (its panorama positions and origin), and written as a view
folder (:class:`~geoloc_ros.posenet.dataset.FolderViewSource`) with ``synthesis.json`` recording
the config, the bundle and the counts. ``geoloc posenet synthesize`` writes one; ``geoloc posenet
train --map`` renders one into the run directory when the config enables synthesis.

The views use the bundle's (distortion-free) camera model scaled by ``image_scale``; rendering
reads a half-resolution copy of the panorama when the views are small (less aliasing, faster).
Every random draw comes from ``seed`` and the panorama's rank, so the folder does not depend on the
number of worker processes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from pydantic import Field, model_validator
from scipy.spatial import cKDTree

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geo.errors import GeodesyError
from geoloc_ros.geometry.frames import body_pose_from_optical, optical_pose_from_body
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.panorama_set import PanoramaRecord, PanoramaSet
from geoloc_ros.gis.views import ViewSpec, ViewSynthesisConfig
from geoloc_ros.gis.virtual import (
    PanoramaPoints,
    load_panorama_for_views,
    offset_is_blocked,
    render_virtual_view,
    warp_points_source,
)
from geoloc_ros.io.atomic import atomic_directory
from geoloc_ros.parallel import process_map
from geoloc_ros.posenet.dataset import CAMERA_FILE, VIEWS_FILE, FolderViewSource
from geoloc_ros.posenet.errors import DatasetError
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

SYNTHESIS_FILE = "synthesis.json"
SYNTHESIS_FORMAT = "geoloc_ros.posenet.synthetic_views"
SYNTHESIS_VERSION = 1

Range = tuple[float, float]


class SynthesisConfig(StrictModel):
    """Which drive-like views to render from the map's panoramas (see the module docstring)."""

    enabled: bool = False
    # The views' camera: the bundle's camera scaled by this factor (0.5: 320x240 for 640x480).
    image_scale: float = Field(0.5, gt=0.05, le=1.0)
    # Camera height above the ground (the on-board camera's mounting height), uniform jitter +-.
    camera_height_m: float = Field(1.5, gt=0.1, le=10.0)
    camera_height_jitter_m: float = Field(0.15, ge=0.0, le=2.0)
    # Used for panoramas whose record gives no camera_height_m (the ground is below the centre).
    default_panorama_height_m: float = Field(2.5, gt=0.1, le=10.0)
    # Camera tilt (positive looks down, as the mounting) and uniform jitters +-.
    pitch_deg: float = Field(2.0, ge=-30.0, le=30.0)
    pitch_jitter_deg: float = Field(1.0, ge=0.0, le=10.0)
    roll_jitter_deg: float = Field(0.5, ge=0.0, le=10.0)
    # Along the streets: signed offset from the line between linked panoramas (positive to the
    # left of the segment's direction), uniform in the range; both signs cover both lanes.
    lateral_range_m: Range = (-3.0, 3.0)
    views_per_metre: float = Field(10.0, ge=0.0, le=200.0)
    # Share of the street views looking along the street (either way) +- the jitter (uniform);
    # the rest look in a uniformly drawn direction.
    along_street_fraction: float = Field(0.7, ge=0.0, le=1.0)
    along_street_yaw_jitter_deg: float = Field(20.0, ge=0.0, le=180.0)
    # Around each panorama (intersections, turns): views uniform in a disc, any heading.
    views_per_panorama: int = Field(40, ge=0, le=10_000)
    panorama_radius_m: float = Field(6.0, gt=0.0, le=30.0)
    # Panoramas without links are linked to their nearest neighbour within this distance.
    max_link_m: float = Field(40.0, gt=0.0)
    # Free space the camera needs beyond its position, seen from the panorama (metres).
    min_clearance_m: float = Field(0.5, ge=0.0)
    # Fill the first panorama's disocclusions from the second one's view; inpaint what remains.
    fill_from_second_panorama: bool = True
    inpaint_radius_px: float = Field(3.0, ge=0.0, le=20.0)
    # Drop views with more unknown pixels than this after the second panorama's fill.
    max_hole_ratio: float = Field(0.15, ge=0.0, le=1.0)
    jpeg_quality: int = Field(92, ge=50, le=100)
    seed: int = 0
    # Render processes (None: every core).
    workers: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SynthesisConfig:
        low, high = self.lateral_range_m
        if not (
            math.isfinite(low) and math.isfinite(high) and low <= high and max(abs(low), abs(high)) <= 15
        ):
            raise ValueError(f"lateral_range_m must be (low, high) within +-15 m, got {(low, high)}")
        return self

    def render_settings(self) -> dict[str, Any]:
        """The fields that determine the rendered views (``workers`` and ``enabled`` do not)."""
        return self.model_dump(mode="json", exclude={"workers", "enabled"})


@dataclass(frozen=True)
class PanoramaInput:
    """One panorama as synthesis needs it: its record, the set holding its files, its map position."""

    record: PanoramaRecord
    set_dir: Path
    position: np.ndarray  # (3,) ENU metres in the bundle's map frame

    @property
    def ground_z(self) -> float:
        return float(self.position[2])


@dataclass(frozen=True)
class ViewRequest:
    """One view to render: its camera pose and the two panoramas to render it from."""

    index: int
    primary: int
    secondary: int | None
    position: np.ndarray  # (3,) camera centre, ENU
    yaw: float  # ENU yaw of the camera body (rad)
    pitch_deg: float
    roll_deg: float
    kind: str  # "street", "disc" or "pose" (a given camera pose, view_requests_at_poses)

    def t_map_optical(self) -> Pose3D:
        body = Pose3D.from_xyz_ypr(
            self.position, self.yaw, math.radians(self.pitch_deg), math.radians(self.roll_deg)
        )
        return optical_pose_from_body(body)


@dataclass(frozen=True)
class SynthesisSummary:
    directory: Path
    requested: int
    written: int
    blocked: int
    too_many_holes: int
    mean_hole_ratio_first: float
    mean_hole_ratio_composited: float
    seconds: float


# ---------------------------------------------------------------------------- sampling
def panorama_inputs_from_bundle(
    bundle: Any, panorama_dirs: Sequence[str | Path] | None = None
) -> list[PanoramaInput]:
    """The bundle's panoramas with their map positions and the set folder holding their files.

    ``panorama_dirs`` default to the sets named in the bundle's manifest (``sources.panorama_sets``).
    """
    dirs = [Path(d) for d in (panorama_dirs or bundle.manifest.get("sources", {}).get("panorama_sets", []))]
    if not dirs:
        raise DatasetError(
            f"{bundle.path}: the manifest names no panorama set (sources.panorama_sets): give the "
            f"panorama set the bundle was built from (--panoramas)"
        )
    where: dict[str, Path] = {}
    for d in dirs:
        if not (d / "panoramas.jsonl").is_file():
            raise DatasetError(f"{d}: not a panorama set (no panoramas.jsonl); give it with --panoramas")
        for record in PanoramaSet.load(d, check_files=False).records:
            where.setdefault(record.id, d)
    inputs = []
    for record, position in zip(bundle.panorama_records, bundle.panorama_positions, strict=True):
        if record.id not in where:
            raise DatasetError(
                f"panorama {record.id!r} of {bundle.path} is in none of the sets {[str(d) for d in dirs]}"
            )
        inputs.append(PanoramaInput(record, where[record.id], np.asarray(position, dtype=float)))
    if not any(p.record.has_depth for p in inputs):
        raise DatasetError(f"{bundle.path}: no panorama has depth: drive-height views need depth")
    return inputs


class _DepthPanoramas:
    """Which panoramas views are rendered from: those with depth, nearest first.

    A panorama without depth (real GIS imagery often has none) still shapes the streets (its links
    and position) but cannot be warped: views near it are rendered from the nearest panoramas that
    have depth (and dropped, counted, when those saw too little of it).
    """

    def __init__(self, panoramas: Sequence[PanoramaInput]) -> None:
        self.indices = np.array([i for i, p in enumerate(panoramas) if p.record.has_depth], dtype=int)
        self.has_depth = np.zeros(len(panoramas), dtype=bool)
        self.has_depth[self.indices] = True
        self._tree = cKDTree(np.array([panoramas[i].position[:2] for i in self.indices]))

    def nearest(self, xy: np.ndarray, k: int = 2) -> list[int]:
        """Up to ``k`` panoramas with depth, nearest to ``xy`` first."""
        k = min(k, len(self.indices))
        _, order = self._tree.query(np.asarray(xy, dtype=float), k=k)
        return [int(self.indices[o]) for o in np.atleast_1d(order)]

    def pair(self, preferred: Sequence[int], xy: np.ndarray) -> tuple[int, int | None]:
        """The primary and secondary panorama of a view: the ``preferred`` ones (in order) that have
        depth, completed by the nearest ones with depth."""
        chosen = [i for i in preferred if self.has_depth[i]][:2]
        if len(chosen) < 2:
            for i in self.nearest(xy, k=len(chosen) + 2):
                if len(chosen) < 2 and i not in chosen:
                    chosen.append(i)
        return chosen[0], (chosen[1] if len(chosen) > 1 else None)


def street_edges(panoramas: Sequence[PanoramaInput], max_link_m: float) -> list[tuple[int, int]]:
    """Undirected pairs of linked panoramas (a panorama without links joins its nearest neighbour)."""
    index = {p.record.id: i for i, p in enumerate(panoramas)}
    edges: set[tuple[int, int]] = set()
    for i, p in enumerate(panoramas):
        for link in p.record.links:
            j = index.get(link)
            if j is not None and j != i:
                edges.add((min(i, j), max(i, j)))
    if len(panoramas) > 1:
        xy = np.array([p.position[:2] for p in panoramas])
        tree = cKDTree(xy)
        linked = {i for e in edges for i in e}
        for i in range(len(panoramas)):
            if i in linked:
                continue
            distance, j = tree.query(xy[i], k=2)
            if distance[1] <= max_link_m:
                edges.add((min(i, int(j[1])), max(i, int(j[1]))))
    return sorted(edges)


def _ground(p: PanoramaInput, config: SynthesisConfig) -> float:
    height = (
        p.record.camera_height_m if p.record.camera_height_m is not None else config.default_panorama_height_m
    )
    return p.ground_z - height


def sample_views(panoramas: Sequence[PanoramaInput], config: SynthesisConfig) -> list[ViewRequest]:
    """Every view to render, drawn from ``config.seed`` (independent of worker count)."""
    rng = np.random.default_rng([config.seed, 7])
    xy = np.array([p.position[:2] for p in panoramas])
    depth = _DepthPanoramas(panoramas)
    ground = np.array([_ground(p, config) for p in panoramas])
    requests: list[ViewRequest] = []
    low, high = config.lateral_range_m

    def attitude() -> tuple[float, float, float]:
        height = config.camera_height_m + rng.uniform(
            -config.camera_height_jitter_m, config.camera_height_jitter_m
        )
        pitch = config.pitch_deg + rng.uniform(-config.pitch_jitter_deg, config.pitch_jitter_deg)
        roll = rng.uniform(-config.roll_jitter_deg, config.roll_jitter_deg)
        return height, pitch, roll

    for i, j in street_edges(panoramas, config.max_link_m):
        a, b = xy[i], xy[j]
        length = float(np.linalg.norm(b - a))
        if length < 1e-3:
            continue
        direction = (b - a) / length
        normal = np.array([-direction[1], direction[0]])
        street_yaw = math.atan2(direction[1], direction[0])
        for _ in range(max(1, round(config.views_per_metre * length)) if config.views_per_metre > 0 else 0):
            t = rng.uniform(0.0, 1.0)
            lateral = rng.uniform(low, high)
            height, pitch, roll = attitude()
            if rng.random() < config.along_street_fraction:
                jitter = math.radians(config.along_street_yaw_jitter_deg)
                yaw = street_yaw + (math.pi if rng.random() < 0.5 else 0.0) + rng.uniform(-jitter, jitter)
            else:
                yaw = rng.uniform(-math.pi, math.pi)
            xy_view = a + t * (b - a) + lateral * normal
            z = (1.0 - t) * ground[i] + t * ground[j] + height
            primary, secondary = depth.pair((i, j) if t <= 0.5 else (j, i), xy_view)
            requests.append(
                ViewRequest(
                    len(requests), primary, secondary, np.array([*xy_view, z]), yaw, pitch, roll, "street"
                )
            )
    for i in range(len(panoramas)):
        for _ in range(config.views_per_panorama):
            radius = config.panorama_radius_m * math.sqrt(rng.uniform(0.0, 1.0))
            angle = rng.uniform(-math.pi, math.pi)
            xy_view = xy[i] + radius * np.array([math.cos(angle), math.sin(angle)])
            height, pitch, roll = attitude()
            yaw = rng.uniform(-math.pi, math.pi)
            primary, other = depth.pair((i,), xy_view)
            requests.append(
                ViewRequest(
                    len(requests),
                    primary,
                    other,
                    np.array([*xy_view, ground[i] + height]),
                    yaw,
                    pitch,
                    roll,
                    "disc",
                )
            )
    return requests


def view_requests_at_poses(panoramas: Sequence[PanoramaInput], poses: Sequence[Pose3D]) -> list[ViewRequest]:
    """A view at each given camera pose ``T_map_optical`` (e.g. a drive's true camera poses).

    Each is rendered from the nearest panorama and filled from the second nearest, like the
    sampled views; index ``k`` is the ``k``-th pose (its image is ``images/{k:07d}.jpg``).
    """
    if not panoramas:
        raise DatasetError("no panorama to render the views from")
    depth = _DepthPanoramas(panoramas)
    requests = []
    for index, pose in enumerate(poses):
        body = body_pose_from_optical(pose)
        yaw, pitch, roll = body.ypr
        primary, secondary = depth.pair((), body.translation[:2])
        requests.append(
            ViewRequest(
                index,
                primary,
                secondary,
                np.asarray(body.translation, dtype=float).copy(),
                yaw,
                math.degrees(pitch),
                math.degrees(roll),
                "pose",
            )
        )
    return requests


# ---------------------------------------------------------------------------- rendering
class _LoadedPanorama:
    """A panorama's colour (possibly half size), range map on the warp grid, body pose and points."""

    def __init__(self, p: PanoramaInput, camera: PinholeCamera, view_config: ViewSynthesisConfig) -> None:
        pano_set = PanoramaSet.load(p.set_dir, check_files=False)
        image, range_map = load_panorama_for_views(pano_set, p.record, camera, view_config)
        if range_map is None:
            raise DatasetError(f"panorama {p.record.id!r}: no depth")
        # A view pixel spans about pano_width / (2 pi fx) panorama pixels: halve the panorama while
        # that stays above 2 (area averaging once, instead of aliasing in every view).
        while image.shape[1] / (2.0 * math.pi * camera.fx) > 2.0:
            image = cv2.pyrDown(image)
        self.image = image
        self.range_map, stride = warp_points_source(range_map, camera, view_config.warp_grid_scale)
        r = p.record
        self.pose = panorama_body_pose(p.position, r.heading_deg, r.pitch_deg, r.roll_deg)
        self.points = PanoramaPoints.from_range_map(self.range_map, self.pose, stride)
        self.id = r.id


def _render(
    request: ViewRequest,
    pano: _LoadedPanorama,
    camera: PinholeCamera,
    view_config: ViewSynthesisConfig,
) -> tuple[np.ndarray, np.ndarray, float]:
    spec = ViewSpec(pano.id, "virtual", 0.0, 0.0, request.pitch_deg, request.t_map_optical())
    view = render_virtual_view(
        spec, camera, pano.image, pano.range_map, pano.pose, config=view_config, points=pano.points
    )
    return view.image, view.valid > 0, view.hole_ratio


def _is_blocked(request: ViewRequest, pano: _LoadedPanorama, clearance: float) -> bool:
    offset = request.position - pano.pose.translation
    distance = float(np.linalg.norm(offset))
    if distance < 1e-3:
        return False
    return offset_is_blocked(pano.range_map, pano.pose, offset / distance, distance, clearance)


@dataclass(frozen=True)
class _TaskResult:
    records: list[dict[str, Any]]
    blocked: int
    too_many_holes: int
    hole_first: list[float]
    hole_composited: list[float]


def _view_config() -> ViewSynthesisConfig:
    # Only the rendering knobs matter here (offsets, yaws and camera are given per view).
    return ViewSynthesisConfig(virtual_offsets_m=(), max_hole_ratio=1.0)


def _render_task(
    primary: PanoramaInput,
    secondaries: dict[int, PanoramaInput],
    requests: list[ViewRequest],
    camera: PinholeCamera,
    config: SynthesisConfig,
    out_dir: str,
) -> _TaskResult:
    """Render the views whose nearer panorama is ``primary``; write their JPEGs into ``out_dir``."""
    cv2.setNumThreads(1)
    view_config = _view_config()
    first = _LoadedPanorama(primary, camera, view_config)
    loaded: dict[int, _LoadedPanorama] = {}
    records: list[dict[str, Any]] = []
    blocked = too_many = 0
    hole_first: list[float] = []
    hole_comp: list[float] = []
    for request in requests:
        if _is_blocked(request, first, config.min_clearance_m):
            blocked += 1
            continue
        image, valid, ratio = _render(request, first, camera, view_config)
        hole_first.append(ratio)
        if ratio > 0 and config.fill_from_second_panorama and request.secondary is not None:
            if request.secondary not in loaded:
                loaded[request.secondary] = _LoadedPanorama(
                    secondaries[request.secondary], camera, view_config
                )
            second = loaded[request.secondary]
            if not _is_blocked(request, second, config.min_clearance_m):
                image2, valid2, _ = _render(request, second, camera, view_config)
                take = ~valid & valid2
                image[take] = image2[take]
                valid = valid | valid2
        composited = float(1.0 - valid.mean())
        hole_comp.append(composited)
        if composited > config.max_hole_ratio:
            too_many += 1
            continue
        if composited > 0 and config.inpaint_radius_px > 0:
            image = cv2.inpaint(
                image, (~valid).astype(np.uint8) * 255, config.inpaint_radius_px, cv2.INPAINT_TELEA
            )
        name = f"images/{request.index:07d}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise DatasetError(f"{out_dir}/{name}: JPEG encoding failed")
        Path(out_dir, name).write_bytes(data.tobytes())
        pose = request.t_map_optical()
        records.append(
            {
                "index": request.index,
                "image": name,
                "translation": pose.translation.tolist(),
                "quaternion": pose.quaternion.tolist(),
                "group": primary.record.id,
                "kind": request.kind,
                "hole_ratio": round(composited, 5),
            }
        )
    return _TaskResult(records, blocked, too_many, hole_first, hole_comp)


def _worker_init() -> None:
    cv2.setNumThreads(1)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


def synthesis_camera(bundle_camera: PinholeCamera, config: SynthesisConfig) -> PinholeCamera:
    """The rendered views' camera: the bundle's, distortion-free, scaled by ``image_scale``."""
    camera = bundle_camera.undistorted()
    return camera if config.image_scale == 1.0 else camera.scaled(config.image_scale)


def synthesize_views(
    bundle: Any,
    out_dir: str | Path,
    config: SynthesisConfig,
    *,
    panorama_dirs: Sequence[str | Path] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    poses: Sequence[Pose3D] | None = None,
) -> SynthesisSummary:
    """Render the drive-height views of ``bundle`` (a :class:`~geoloc_ros.mapping.map.MapBundle`)
    into the view folder ``out_dir`` (atomically), with ``synthesis.json`` beside ``views.jsonl``.

    ``poses``: render a view at each of these camera poses ``T_map_optical`` instead of the
    sampled ones (:func:`view_requests_at_poses`; the config's rendering settings still apply).
    """
    started = time.monotonic()
    panoramas = panorama_inputs_from_bundle(bundle, panorama_dirs)
    camera = synthesis_camera(bundle.camera, config)
    requests = sample_views(panoramas, config) if poses is None else view_requests_at_poses(panoramas, poses)
    if not requests:
        raise DatasetError(
            "the synthesis config asks for no view (views_per_metre and views_per_panorama are 0)"
        )
    by_primary: dict[int, list[ViewRequest]] = {}
    for request in requests:
        by_primary.setdefault(request.primary, []).append(request)
    n_workers = workers or config.workers or os.cpu_count() or 1
    target = Path(out_dir)
    logger.info(
        "rendering %d drive-height views (%dx%d) from %d panoramas with %d processes",
        len(requests),
        camera.width,
        camera.height,
        len(panoramas),
        n_workers,
    )
    results: list[_TaskResult] = []
    with atomic_directory(target, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        tasks = []
        for i, reqs in sorted(by_primary.items()):
            needed = {r.secondary for r in reqs if r.secondary is not None}
            tasks.append((panoramas[i], {j: panoramas[j] for j in needed}, reqs, camera, config, str(tmp)))
        progress = progress_bar(total=len(requests), desc="drive-height views", unit="view")
        if n_workers == 1:
            for task in tasks:
                results.append(_render_task(*task))
                progress.update(len(task[2]))
        else:
            calls = ((_render_task, task) for task in tasks)
            for result, task in zip(
                process_map(calls, n_workers, initializer=_worker_init), tasks, strict=True
            ):
                results.append(result)
                progress.update(len(task[2]))
        progress.close()
        records = sorted((r for res in results for r in res.records), key=lambda r: r["index"])
        if not records:
            raise DatasetError("every synthesized view was blocked or had too many holes")
        lines = [
            json.dumps({k: r[k] for k in ("image", "translation", "quaternion", "group")}) for r in records
        ]
        (tmp / VIEWS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / CAMERA_FILE).write_text(
            yaml.safe_dump(camera.to_dict("posenet_synthetic_views"), sort_keys=False)
        )
        hole_first = [h for res in results for h in res.hole_first]
        hole_comp = [h for res in results for h in res.hole_composited]
        summary = SynthesisSummary(
            target,
            len(requests),
            len(records),
            sum(res.blocked for res in results),
            sum(res.too_many_holes for res in results),
            float(np.mean(hole_first)) if hole_first else 0.0,
            float(np.mean(hole_comp)) if hole_comp else 0.0,
            time.monotonic() - started,
        )
        names = ("street", "disc") if poses is None else ("pose",)
        kinds = {k: sum(1 for r in records if r["kind"] == k) for k in names}
        metadata = {
            "format": SYNTHESIS_FORMAT,
            "version": SYNTHESIS_VERSION,
            "settings": config.render_settings(),
            "bundle": str(bundle.path),
            "origin": bundle.origin.to_dict(),
            "panorama_sets": sorted({str(p.set_dir) for p in panoramas}),
            "panoramas_without_depth": [p.record.id for p in panoramas if not p.record.has_depth],
            "counts": {
                "requested": summary.requested,
                "written": summary.written,
                "blocked": summary.blocked,
                "too_many_holes": summary.too_many_holes,
                "by_kind": kinds,
            },
            "mean_hole_ratio": {
                "first_panorama": summary.mean_hole_ratio_first,
                "composited": summary.mean_hole_ratio_composited,
            },
            "seconds": round(summary.seconds, 1),
        }
        (tmp / SYNTHESIS_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "wrote %d views to %s in %.0f s (%d blocked, %d with too many holes; holes %.1f%% -> %.1f%%)",
        summary.written,
        target,
        summary.seconds,
        summary.blocked,
        summary.too_many_holes,
        100 * summary.mean_hole_ratio_first,
        100 * summary.mean_hole_ratio_composited,
    )
    return summary


def read_synthesis_metadata(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / SYNTHESIS_FILE
    if not path.is_file():
        raise DatasetError(f"{directory}: not a synthesized view folder (no {SYNTHESIS_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SYNTHESIS_FORMAT:
        raise DatasetError(f"{path}: not a {SYNTHESIS_FORMAT} file")
    if data.get("version") != SYNTHESIS_VERSION:
        raise DatasetError(
            f"{path}: version {data.get('version')} is not supported (expected {SYNTHESIS_VERSION})"
        )
    return data


def open_synthetic_views(
    directory: str | Path, config: SynthesisConfig, origin: GeoOrigin
) -> FolderViewSource:
    """A synthesized view folder, checked to match ``config`` and the bundle's ``origin``."""
    data = read_synthesis_metadata(directory)
    expected = config.render_settings()
    if data.get("settings") != expected:
        stored = data.get("settings") or {}
        differing = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
        raise DatasetError(
            f"{directory}: rendered with other synthesis settings (differing: {differing}); render "
            f"them again or use the config they were made with"
        )
    stored_origin = data.get("origin") or {}
    try:
        same = origin.same_frame(GeoOrigin.from_dict(stored_origin))
    except (KeyError, TypeError, ValueError, GeodesyError):
        same = False
    if not same:
        raise DatasetError(
            f"{directory}: rendered in another map frame (origin {stored_origin}, "
            f"expected {origin.to_dict()})"
        )
    return FolderViewSource(directory)
