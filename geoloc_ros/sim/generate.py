"""Generate a whole simulated data set: panorama set + drive bag + ground truth.

Output layout of :func:`generate` (``out_dir``)::

    scenario.yaml                 the fully resolved scenario
    summary.json                  seed, counts, durations
    panoramas/                    panorama set (gis.panorama_set): panoramas.jsonl, origin.json, images/;
                                  its metadata carries ``capture.metadata_error``
    panoramas_truth.jsonl         evaluation only: each panorama's true id, lat, lon, alt, heading_deg,
                                  x, y, z (ENU); never read by the map build or the localizers
    drive/bag/                    rosbag2 (MCAP by default): camera, camera_info, RTK, GPS, IMU topics
    drive/camera.yaml             true intrinsics incl. distortion (ROS calibration YAML)
    drive/camera_mounting.yaml    camera on base_link (geometry.frames.CameraMounting)
    drive/groundtruth.tum         noise-free base_link poses at the camera stamps (TUM, planar)
    drive/groundtruth.npz         the same as arrays: stamp_ns, position_enu, ypr_rad, quaternion_xyzw

Everything is built in a temporary sibling directory and moved into place at the end, so an
interrupted run leaves nothing behind. Rendering runs in worker processes (all cores by default);
each panorama and each frame draws its randomness from its own seed, so the output does not depend
on the number of workers.

**Why one module of ~700 lines.** The worker tasks (panoramas, frames) and the writer of the
panorama set, bag and ground truth share one plan and its seeds; the process pool is
:mod:`geoloc_ros.parallel`.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import yaml

from geoloc_ros.config import dump_yaml
from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.geo.heading import enu_yaw_to_compass
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.depth.streetview import encode_depth_map
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.panorama_set import PANORAMAS_TRUTH, PanoramaRecord, PanoramaSetWriter
from geoloc_ros.io import bag as rosbag
from geoloc_ros.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text
from geoloc_ros.io.tum import planar_trajectory, write_tum
from geoloc_ros.parallel import process_map
from geoloc_ros.progress import progress_bar
from geoloc_ros.sim.drive import RouteLeg, Trajectory, build_trajectory, plan_route
from geoloc_ros.sim.errors import SimError
from geoloc_ros.sim.gsvdepth import coarse_planes, panorama_xml
from geoloc_ros.sim.render import Conditions, render_panorama
from geoloc_ros.sim.scenario import Scenario
from geoloc_ros.sim.sensors import CameraModel, camera_pose, gps_fixes, imu_samples, rtk_fixes
from geoloc_ros.sim.town import (
    EPOCH_CAPTURE,
    EPOCH_DRIVE,
    StreetNetwork,
    Town,
    build_network,
    build_town,
    seed_for,
)

logger = logging.getLogger(__name__)

BAG_DIR = "bag"
GROUNDTRUTH_TUM = "groundtruth.tum"
GROUNDTRUTH_NPZ = "groundtruth.npz"
FRAMES_PER_TASK = 8


# ---------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class PanoramaPose:
    id: str
    position: np.ndarray  # ENU camera centre
    heading_deg: float
    pitch_deg: float
    roll_deg: float
    street: int
    links: tuple[str, ...]
    captured_at: str

    @property
    def T_map_body(self) -> Pose3D:  # noqa: N802 - the pose naming convention
        return panorama_body_pose(self.position, self.heading_deg, self.pitch_deg, self.roll_deg)


@dataclass
class Plan:
    """Everything geometric about a run, decided before any rendering (cheap, deterministic)."""

    scenario: Scenario
    seed: int
    origin: GeoOrigin
    network: StreetNetwork
    route: list[RouteLeg]
    trajectory: Trajectory
    panoramas: list[PanoramaPose]
    frame_times: np.ndarray  # seconds since the first frame
    start_ns: int
    reported: list[PanoramaPose]  # the panoramas as the metadata states them (with its error)
    has_depth: np.ndarray  # (P,) bool: the panorama's depth is written (capture.no_depth_fraction)
    # Seeds the drive's own randomness (speed profile, suspension, light, image and sensor noise);
    # ``seed`` alone decides the town, its panoramas and the route, so another drive seed is another
    # drive through the same streets of the same town (a survey drive).
    drive_seed: int

    @property
    def frame_stamps_ns(self) -> np.ndarray:
        return self.start_ns + np.rint(self.frame_times * 1e9).astype(np.int64)

    def stamp_ns(self, t_s: float | np.ndarray) -> np.ndarray:
        return self.start_ns + np.rint(np.asarray(t_s) * 1e9).astype(np.int64)


def _iso_to_ns(text: str, field: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SimError(f"{field}: not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise SimError(f"{field}: needs a UTC offset (e.g. +00:00): {text!r}")
    return round(when.timestamp() * 1e9)


def _plan_panoramas(
    scenario: Scenario, network: StreetNetwork, route: list[RouteLeg], rng: np.random.Generator
) -> list[PanoramaPose]:
    cap = scenario.capture
    street_ids = (
        sorted({leg.street for leg in route}) if cap.coverage == "route" else [s.id for s in network.streets]
    )
    t0 = datetime.fromisoformat(cap.captured_at)
    poses: list[PanoramaPose] = []
    by_street: dict[int, list[int]] = {}
    for sid in street_ids:
        st = network.streets[sid]
        forward = bool(rng.random() < 0.5)
        s = float(rng.uniform(0.0, cap.spacing_m * 0.5))
        positions = []
        while s <= st.length:
            positions.append(s)
            s += cap.spacing_m + float(rng.uniform(-cap.spacing_jitter_m, cap.spacing_jitter_m))
        if not forward:
            positions = [st.length - p for p in positions]
        ids = []
        for s_pos in positions:
            pos, tan = st.point_at(s_pos)
            if not forward:
                tan = -tan
            normal = np.array([-tan[1], tan[0]])
            xy = pos + normal * float(rng.uniform(-cap.lateral_jitter_m, cap.lateral_jitter_m))
            yaw = math.atan2(tan[1], tan[0]) + math.radians(
                float(rng.uniform(-cap.heading_jitter_deg, cap.heading_jitter_deg))
            )
            k = len(poses)
            pid = f"pano_{k:05d}"
            poses.append(
                PanoramaPose(
                    id=pid,
                    position=np.array([xy[0], xy[1], cap.camera_height_m]),
                    heading_deg=float(enu_yaw_to_compass(yaw)),
                    pitch_deg=float(rng.uniform(-cap.tilt_jitter_deg, cap.tilt_jitter_deg)),
                    roll_deg=float(rng.uniform(-cap.tilt_jitter_deg, cap.tilt_jitter_deg)),
                    street=sid,
                    links=(),
                    captured_at=(t0 + timedelta(seconds=2.5 * k)).isoformat(),
                )
            )
            ids.append(k)
        by_street[sid] = ids
    # Links: neighbours along the street (ids are in street order), and the panoramas nearest to a
    # node on each street meeting there.
    links: dict[int, set[int]] = {i: set() for i in range(len(poses))}
    for ids in by_street.values():
        for a, b in itertools.pairwise(ids):
            links[a].add(b)
            links[b].add(a)
    for node, sids in network.node_streets.items():
        ends = []
        for sid in sids:
            if sid not in by_street or not by_street[sid]:
                continue
            ends.append(
                min(
                    by_street[sid],
                    key=lambda i: float(np.linalg.norm(poses[i].position[:2] - network.nodes[node])),
                )
            )
        for a in ends:
            for b in ends:
                if a != b:
                    links[a].add(b)
    if cap.max_panoramas is not None:
        poses = poses[: cap.max_panoramas]
    return [
        dataclasses.replace(p, links=tuple(poses[j].id for j in sorted(links[i]) if j < len(poses)))
        for i, p in enumerate(poses)
    ]


def _metadata_error(
    panoramas: list[PanoramaPose], scenario: Scenario, rng: np.random.Generator
) -> list[PanoramaPose]:
    """The panoramas as the capture car's metadata states them: white error plus a first-order
    Gauss-Markov drift along the run (panorama order), decorrelating over ``drift_correlation_m``."""
    err = scenario.capture.metadata_error
    if not err.any or not panoramas:
        return list(panoramas)
    n = len(panoramas)
    white = rng.normal(size=(n, 3))
    innovations = rng.normal(size=(n, 3))
    drift = np.zeros((n, 3))
    drift[0] = innovations[0]
    for k in range(1, n):
        step = float(np.linalg.norm(panoramas[k].position[:2] - panoramas[k - 1].position[:2]))
        a = math.exp(-step / err.drift_correlation_m)
        drift[k] = a * drift[k - 1] + math.sqrt(1.0 - a * a) * innovations[k]
    out = []
    for k, pose in enumerate(panoramas):
        dxy = err.position_sigma_m * white[k, :2] + err.drift_sigma_m * drift[k, :2]
        dheading = err.heading_sigma_deg * white[k, 2] + err.drift_heading_sigma_deg * drift[k, 2]
        position = pose.position.copy()
        position[:2] += dxy
        out.append(
            dataclasses.replace(
                pose, position=position, heading_deg=float((pose.heading_deg + dheading) % 360.0)
            )
        )
    return out


def plan(scenario: Scenario, seed: int, drive_seed: int | None = None) -> Plan:
    """Street network, route, trajectory, panorama poses and frame times for ``seed``; the drive's
    speed profile from ``drive_seed`` (default ``seed``). The lane path, and so the town (its
    occluders keep clear of the path), does not depend on ``drive_seed``."""
    drive_seed = seed if drive_seed is None else int(drive_seed)
    network = build_network(scenario, seed)
    route = plan_route(
        network,
        scenario.drive.route_length_m + 20.0,
        scenario.drive.min_turns,
        np.random.default_rng(seed_for(seed, 200)),
    )
    trajectory = build_trajectory(scenario, network, route, np.random.default_rng(seed_for(drive_seed, 201)))
    panoramas = _plan_panoramas(scenario, network, route, np.random.default_rng(seed_for(seed, 202)))
    n_frames = math.floor(trajectory.duration * scenario.drive.rate_hz) + 1
    if scenario.drive.max_frames is not None:
        n_frames = min(n_frames, scenario.drive.max_frames)
    frame_times = np.arange(n_frames) / scenario.drive.rate_hz
    frame_times = frame_times[frame_times <= trajectory.duration]
    start_ns = _iso_to_ns(scenario.drive.start_time, "drive.start_time")
    _iso_to_ns(scenario.capture.captured_at, "capture.captured_at")
    # Own generators: the metadata error and the depth draw leave every other choice unchanged.
    reported = _metadata_error(panoramas, scenario, np.random.default_rng(seed_for(seed, 203)))
    has_depth = np.random.default_rng(seed_for(seed, 204)).random(len(panoramas)) >= (
        scenario.capture.no_depth_fraction
    )
    if scenario.capture.depth == "none":
        has_depth[:] = False
    return Plan(
        scenario,
        int(seed),
        scenario.town.origin.geo_origin(),
        network,
        route,
        trajectory,
        panoramas,
        frame_times,
        start_ns,
        reported,
        has_depth,
        drive_seed,
    )


def town_for_plan(p: Plan) -> Town:
    """The town of a plan, with occluders kept clear of the panorama and vehicle paths."""
    capture_points = np.array([pp.position[:2] for pp in p.panoramas]) if p.panoramas else None
    return build_town(p.scenario, p.seed, p.network, capture_points, p.trajectory.path_xy)


def capture_conditions(p: Plan) -> Conditions:
    ill = p.scenario.nuisances.illumination
    return Conditions.at_hour(ill.capture_hour, ill.capture_cloud_cover, EPOCH_CAPTURE, seed_for(p.seed, 300))


def drive_conditions(p: Plan) -> Conditions:
    ill = p.scenario.nuisances.illumination
    cond = Conditions.at_hour(ill.drive_hour, ill.drive_cloud_cover, EPOCH_DRIVE, seed_for(p.drive_seed, 301))
    b, g, r = ill.drive_tint_bgr
    if (b, g, r) == (1.0, 1.0, 1.0):
        return cond
    sun, amb = cond.sun_bgr, cond.ambient_bgr
    return dataclasses.replace(
        cond,
        sun_bgr=(sun[0] * b, sun[1] * g, sun[2] * r),
        ambient_bgr=(amb[0] * b, amb[1] * g, amb[2] * r),
    )


def drive_camera_model(scenario: Scenario) -> CameraModel:
    cam_cfg = scenario.drive.camera
    return CameraModel(
        camera=cam_cfg.pinhole(distorted=scenario.nuisances.lens_distortion),
        mounting=cam_cfg.mounting,
        nuisances=scenario.nuisances,
        supersample=scenario.render.supersample,
        view_distance_m=scenario.render.view_distance_m,
    )


# --------------------------------------------------------------------------------------- workers
@dataclass
class _WorkerState:
    plan: Plan
    town: Town


_WORKER: list[_WorkerState] = []  # the state of this worker process (one entry once initialised)


def _init_worker(scenario: Scenario, seed: int, drive_seed: int) -> None:
    cv2.setNumThreads(1)  # one process per core already
    p = plan(scenario, seed, drive_seed)
    _WORKER[:] = [_WorkerState(p, town_for_plan(p))]


def _worker() -> _WorkerState:
    if not _WORKER:
        raise SimError("simulator worker used before _init_worker()")
    return _WORKER[0]


@dataclass(frozen=True)
class PanoramaResult:
    index: int
    image: np.ndarray
    depth: np.ndarray | None
    gsv_xml: bytes | None
    seconds: float


@dataclass(frozen=True)
class FrameResult:
    index: int
    image: np.ndarray
    seconds: float


def _render_panorama_task(index: int) -> PanoramaResult:
    state = _worker()
    p, town = state.plan, state.town
    cap = p.scenario.capture
    pose = p.panoramas[index]
    start = time.perf_counter()
    bgr, rng_img = render_panorama(
        town,
        pose.T_map_body,
        cap.panorama_width,
        capture_conditions(p),
        p.scenario.render.panorama_supersample,
        depth_width=cap.depth_width,
    )
    gsv = None
    with_planes = cap.gsv_depth if cap.depth == "exact" else cap.depth == "plane"
    if with_planes and p.has_depth[index]:
        # The planes are relative to the panorama's own (true) frame; the XML's pose is the metadata's.
        indices, planes = coarse_planes(town, pose.T_map_body)
        stated = p.reported[index]
        lat, lon, alt = enu_to_geodetic(stated.position, p.origin)
        by_id = {pp.id: pp for pp in p.reported}
        links = []
        for other in pose.links:
            dx, dy = by_id[other].position[:2] - stated.position[:2]
            links.append((other, float(enu_yaw_to_compass(math.atan2(dy, dx)))))
        gsv = panorama_xml(
            pose.id,
            float(lat),
            float(lon),
            float(alt),
            stated.heading_deg,
            stated.pitch_deg,
            stated.roll_deg,
            cap.panorama_width,
            encode_depth_map(indices, planes),
            links,
        ).encode()
    depth = rng_img if cap.depth == "exact" and p.has_depth[index] else None
    return PanoramaResult(index, bgr, depth, gsv, time.perf_counter() - start)


def _render_frames_task(indices: tuple[int, ...]) -> list[FrameResult]:
    state = _worker()
    p, town = state.plan, state.town
    model = drive_camera_model(p.scenario)
    conditions = drive_conditions(p)
    out = []
    for i in indices:
        start = time.perf_counter()
        rng = np.random.default_rng(seed_for(p.drive_seed, 400, i))
        image = model.capture(town, p.trajectory, float(p.frame_times[i]), conditions, rng)
        out.append(FrameResult(i, image, time.perf_counter() - start))
    return out


Task = tuple[Callable[[Any], object], object]


def _run_tasks(
    tasks: list[Task], scenario: Scenario, seed: int, drive_seed: int, workers: int
) -> Iterator[object]:
    """Results of ``tasks`` in order, computed by ``workers`` processes (in-process for 1)."""
    if workers <= 1:
        p = plan(scenario, seed, drive_seed)
        _WORKER[:] = [_WorkerState(p, town_for_plan(p))]
        try:
            for fn, arg in tasks:
                yield fn(arg)
        finally:
            _WORKER.clear()
        return
    yield from process_map(
        ((fn, (arg,)) for fn, arg in tasks),
        workers,
        initializer=_init_worker,
        initargs=(scenario, seed, drive_seed),
    )


# ------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class GenerateSummary:
    out_dir: Path
    seed: int
    drive_seed: int
    panoramas: int
    frames: int
    route_length_m: float
    duration_s: float
    seconds_total: float
    panorama_seconds: list[float]
    frame_seconds: list[float]

    def to_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "drive_seed": self.drive_seed,
            "panoramas": self.panoramas,
            "frames": self.frames,
            "route_length_m": round(self.route_length_m, 3),
            "duration_s": round(self.duration_s, 3),
            "seconds_total": round(self.seconds_total, 2),
            "median_panorama_render_s": round(float(np.median(self.panorama_seconds)), 4)
            if self.panorama_seconds
            else None,
            "median_frame_render_s": round(float(np.median(self.frame_seconds)), 4)
            if self.frame_seconds
            else None,
        }


def _records(p: Plan) -> list[PanoramaRecord]:
    """The panorama-set lines: the metadata's poses (with their error) and stated uncertainty."""
    records = []
    cap = p.scenario.capture
    position_sigma, heading_sigma = cap.metadata_error.stated()
    for pose in p.reported:
        lat, lon, alt = enu_to_geodetic(pose.position, p.origin)
        records.append(
            PanoramaRecord(
                id=pose.id,
                lat=float(lat),
                lon=float(lon),
                alt=float(alt),
                heading_deg=pose.heading_deg,
                pitch_deg=pose.pitch_deg,
                roll_deg=pose.roll_deg,
                camera_height_m=cap.camera_height_m,
                image=f"images/{pose.id}.jpg",
                links=list(pose.links),
                captured_at=datetime.fromisoformat(pose.captured_at),
                position_sigma_m=position_sigma,
                heading_sigma_deg=heading_sigma,
            )
        )
    return records


def truth_lines(p: Plan) -> str:
    """``panoramas_truth.jsonl``: the true pose of every panorama (evaluation only)."""
    lines = []
    for pose in p.panoramas:
        lat, lon, alt = enu_to_geodetic(pose.position, p.origin)
        x, y, z = (round(float(v), 4) for v in pose.position)
        lines.append(
            json.dumps(
                {
                    "id": pose.id,
                    "lat": float(lat),
                    "lon": float(lon),
                    "alt": float(alt),
                    "heading_deg": pose.heading_deg,
                    "x": x,
                    "y": y,
                    "z": z,
                }
            )
        )
    return "\n".join(lines) + "\n"


def write_groundtruth(drive_dir: Path, p: Plan) -> None:
    """Noise-free ``base_link`` poses at the camera stamps (TUM text + npz arrays)."""
    stamps = p.frame_stamps_ns
    pos, ypr = p.trajectory.states_at(p.frame_times)
    quats = np.array([Pose3D.from_xyz_ypr(x, *a).quaternion for x, a in zip(pos, ypr, strict=True)])
    # TUM files follow the project's planar convention (docs/formats.md); the npz keeps the full 3D pose.
    write_tum(drive_dir / GROUNDTRUTH_TUM, planar_trajectory(stamps, pos[:, :2], ypr[:, 0]))
    buf = io.BytesIO()
    np.savez(
        buf,
        stamp_ns=stamps,
        position_enu=pos,
        ypr_rad=ypr,
        quaternion_xyzw=quats,
        origin=np.array([p.origin.lat_deg, p.origin.lon_deg, p.origin.alt_m]),
    )
    atomic_write_bytes(drive_dir / GROUNDTRUTH_NPZ, buf.getvalue())


class _SensorStream:
    """RTK, GPS, IMU and CameraInfo messages, written to the bag in time order between frames."""

    def __init__(self, p: Plan, writer: rosbag.BagWriter) -> None:
        sc = p.scenario
        b = sc.bag
        self.writer = writer
        store = writer.typestore
        events: list[tuple[int, int, str, object]] = []
        rng = np.random.default_rng(seed_for(p.drive_seed, 500))
        rtk = rtk_fixes(p.trajectory, sc.sensors.rtk_rate_hz, sc.sensors.rtk_sigma_m, rng)
        for t, x, sig in zip(rtk.times, rtk.positions, rtk.sigma, strict=True):
            lat, lon, alt = enu_to_geodetic(x, p.origin)
            ns = int(p.stamp_ns(t))
            events.append(
                (
                    ns,
                    0,
                    b.rtk_topic,
                    rosbag.navsatfix_message(
                        store,
                        ns,
                        b.rtk_frame,
                        float(lat),
                        float(lon),
                        float(alt),
                        np.diag(sig**2),
                        rosbag.STATUS_GBAS_FIX,
                    ),
                )
            )
        if sc.sensors.gps.enabled:
            gps = gps_fixes(p.trajectory, sc.sensors.gps, np.random.default_rng(seed_for(p.drive_seed, 501)))
            for t, x, sig in zip(gps.times, gps.positions, gps.sigma, strict=True):
                lat, lon, alt = enu_to_geodetic(x, p.origin)
                ns = int(p.stamp_ns(t))
                events.append(
                    (
                        ns,
                        1,
                        b.gps_topic,
                        rosbag.navsatfix_message(
                            store,
                            ns,
                            b.gps_frame,
                            float(lat),
                            float(lon),
                            float(alt),
                            np.diag(sig**2),
                            rosbag.STATUS_FIX,
                        ),
                    )
                )
        imu = imu_samples(
            p.trajectory,
            sc.sensors.imu_rate_hz,
            sc.sensors.imu_orientation_sigma_deg,
            np.random.default_rng(seed_for(p.drive_seed, 502)),
        )
        for t, q, w, a in zip(
            imu.times, imu.quaternions, imu.angular_velocity, imu.linear_acceleration, strict=True
        ):
            ns = int(p.stamp_ns(t))
            events.append(
                (
                    ns,
                    2,
                    b.imu_topic,
                    rosbag.imu_message(store, ns, b.imu_frame, q, imu.orientation_sigma_rad**2, w, a),
                )
            )
        events.sort(key=lambda e: (e[0], e[1]))
        self.events = events
        self.next = 0
        self.counts = {"rtk": len(rtk.times), "imu": len(imu.times)}

    def flush_until(self, stamp_ns: int) -> None:
        while self.next < len(self.events) and self.events[self.next][0] <= stamp_ns:
            ns, _, topic, msg = self.events[self.next]
            self.writer.write(topic, ns, msg)
            self.next += 1


def _write_panoramas(
    out: Path,
    p: Plan,
    records: list[PanoramaRecord],
    results: Iterator[object],
    seconds: list[float],
    bar: Any,
) -> None:
    """The panorama set from the first ``len(p.panoramas)`` task results."""
    with PanoramaSetWriter(out, origin=p.origin, jpeg_quality=p.scenario.capture.jpeg_quality) as writer:
        for _ in range(len(p.panoramas)):
            res = cast(PanoramaResult, next(results))
            record = records[res.index]
            extra = {}
            if res.gsv_xml is not None:
                rel = f"images/{record.id}_depth_gsv.xml"
                extra[rel] = res.gsv_xml
                record = record.model_copy(update={"depth_gsv": rel})
            writer.add(record, res.image, res.depth, extra_files=extra)
            seconds.append(res.seconds)
            bar.update(1)


def generate(
    scenario: Scenario,
    out_dir: str | Path,
    seed: int = 1,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
    drive_seed: int | None = None,
    drive_only: bool = False,
) -> GenerateSummary:
    """Simulate ``scenario`` with ``seed`` into ``out_dir`` (see the module docstring for the layout).

    ``workers`` defaults to the scenario's ``render.workers`` or all cores. ``progress=None`` shows a
    bar on a terminal only. An existing ``out_dir`` is refused unless ``overwrite``.
    ``drive_seed`` (default ``seed``) seeds the drive alone (:class:`Plan`); with ``drive_only`` only
    ``scenario.yaml``, ``summary.json`` and ``drive/`` are written: another drive through the streets
    of the town and panorama set that ``seed`` gives (a survey drive for ``geoloc map refine``).
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    n_workers = int(workers or scenario.render.workers or os.cpu_count() or 1)
    p = plan(scenario, seed, drive_seed)
    if not p.panoramas:
        raise SimError("capture: the scenario produces no panoramas")
    if len(p.frame_times) == 0:
        raise SimError("drive: the scenario produces no camera frames")
    sc = scenario
    b = sc.bag
    model = drive_camera_model(sc)
    stamps = p.frame_stamps_ns
    logger.info(
        "simulating %s (seed %d, drive seed %d): %d panoramas, %d frames over %.0f s, %d workers",
        sc.name,
        seed,
        p.drive_seed,
        0 if drive_only else len(p.panoramas),
        len(stamps),
        p.trajectory.duration,
        n_workers,
    )
    records = _records(p)
    pano_seconds: list[float] = []
    frame_seconds: list[float] = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        atomic_write_text(tmp / "scenario.yaml", dump_yaml(sc))
        if not drive_only:
            atomic_write_text(tmp / PANORAMAS_TRUTH, truth_lines(p))
        drive_dir = tmp / "drive"
        drive_dir.mkdir()
        atomic_write_text(
            drive_dir / "camera.yaml", yaml.safe_dump(model.camera.to_dict("camera"), sort_keys=False)
        )
        atomic_write_text(drive_dir / "camera_mounting.yaml", dump_yaml(model.mounting))
        write_groundtruth(drive_dir, p)
        n_panoramas = 0 if drive_only else len(p.panoramas)
        tasks: list[Task] = [(_render_panorama_task, i) for i in range(n_panoramas)]
        chunks = [
            tuple(range(i, min(i + FRAMES_PER_TASK, len(stamps))))
            for i in range(0, len(stamps), FRAMES_PER_TASK)
        ]
        tasks += [(_render_frames_task, c) for c in chunks]
        bar = progress_bar(
            total=n_panoramas + len(stamps),
            desc=f"sim {sc.name}",
            unit="img",
            disable=None if progress is None else not progress,
        )
        results = _run_tasks(tasks, sc, seed, p.drive_seed, n_workers)
        if n_panoramas:
            _write_panoramas(tmp / "panoramas", p, records, results, pano_seconds, bar)
        with rosbag.BagWriter(drive_dir / BAG_DIR, storage=b.storage, distro=b.distro) as writer:
            image_topic = b.image_topic_resolved
            image_type = (
                "sensor_msgs/msg/CompressedImage"
                if b.image_transport == "compressed"
                else "sensor_msgs/msg/Image"
            )
            writer.add_topic(image_topic, image_type)
            writer.add_topic(b.camera_info_topic, "sensor_msgs/msg/CameraInfo")
            writer.add_topic(b.rtk_topic, "sensor_msgs/msg/NavSatFix")
            if sc.sensors.gps.enabled:
                writer.add_topic(b.gps_topic, "sensor_msgs/msg/NavSatFix")
            writer.add_topic(b.imu_topic, "sensor_msgs/msg/Imu")
            sensors = _SensorStream(p, writer)
            store = writer.typestore
            for _ in chunks:
                batch = cast(list[FrameResult], next(results))
                for fr in batch:
                    ns = int(stamps[fr.index])
                    sensors.flush_until(ns)
                    if b.image_transport == "compressed":
                        msg = rosbag.compressed_image_message(
                            store, fr.image, ns, b.camera_frame, "jpeg", b.jpeg_quality
                        )
                    else:
                        msg = rosbag.image_message(store, fr.image, ns, b.camera_frame, "bgr8")
                    writer.write(image_topic, ns, msg)
                    writer.write(
                        b.camera_info_topic,
                        ns,
                        rosbag.camera_info_message(store, model.camera, ns, b.camera_frame),
                    )
                    frame_seconds.append(fr.seconds)
                    bar.update(1)
            sensors.flush_until(int(p.stamp_ns(p.trajectory.duration)) + 1)
        bar.close()
        cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p.trajectory.xy, axis=0), axis=1))])
        summary = GenerateSummary(
            out,
            int(seed),
            p.drive_seed,
            n_panoramas,
            len(stamps),
            float(cum[-1]),
            p.trajectory.duration,
            time.perf_counter() - t_start,
            pano_seconds,
            frame_seconds,
        )
        atomic_write_json(tmp / "summary.json", {"scenario": sc.name, **summary.to_json()})
    logger.info("wrote %s in %.1f s", out, summary.seconds_total)
    return summary


def read_groundtruth(drive_dir: str | Path) -> dict[str, np.ndarray]:
    """The arrays of ``drive/groundtruth.npz``: stamp_ns, position_enu, ypr_rad, quaternion_xyzw, origin."""
    path = Path(drive_dir) / GROUNDTRUTH_NPZ
    if not path.is_file():
        raise SimError(f"{path}: ground-truth file not found")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def camera_poses_from_groundtruth(gt: dict[str, np.ndarray], mounting_yaml: str | Path) -> list[Pose3D]:
    """``T_map_optical`` of the camera at each ground-truth stamp."""
    from geoloc_ros.geometry.frames import CameraMounting

    mounting = CameraMounting.load(mounting_yaml)
    return [
        camera_pose(Pose3D.from_xyz_ypr(x, *a), mounting)
        for x, a in zip(gt["position_enu"], gt["ypr_rad"], strict=True)
    ]


__all__ = [
    "GenerateSummary",
    "PanoramaPose",
    "Plan",
    "camera_poses_from_groundtruth",
    "capture_conditions",
    "drive_camera_model",
    "drive_conditions",
    "generate",
    "plan",
    "read_groundtruth",
    "town_for_plan",
]
