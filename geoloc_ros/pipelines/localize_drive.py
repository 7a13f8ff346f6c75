"""Offline localization of a recorded drive (``geoloc localize``): every frame, in order, as fast as
the machine allows, with the same results as one frame at a time.

Pipelining: a worker thread reads and decodes frame ``t + 1`` from the bag, rectifies it and
extracts its features while the main thread matches and solves frame ``t`` (OpenCV and the bag
reader release the GIL, so the two overlap on two cores). Features are a deterministic function of
the image, and the localizer strips or adds MSER as its state requires (:meth:`Localizer.localize_frame`),
so the output does not depend on the pipelining: ``pipeline=False`` gives the same estimates.

Outputs (:func:`write_outputs`, one directory written atomically): ``estimates.jsonl`` (every pose
with its 6x6 covariance, :mod:`geoloc_ros.io.estimates`), ``trajectory.tum`` (for evo; planar like
every TUM file, docs/formats.md), ``frames.csv`` (every frame: status, mode, inliers, stage
timings), ``summary.json`` and the resolved ``config.yaml``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoloc_ros.config import dump_yaml
from geoloc_ros.geo.enu import GeoOrigin, geodetic_to_enu
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.atomic import atomic_directory, atomic_write_json, atomic_write_text
from geoloc_ros.io.drive import DriveBag, Frame
from geoloc_ros.io.estimates import EstimateLogWriter
from geoloc_ros.io.tum import estimates_to_tum, write_tum
from geoloc_ros.localize.errors import DriveLocalizationError
from geoloc_ros.localize.localizer import LocalizationResult, Localizer, PositionPrior, StageTimings
from geoloc_ros.localize.query import QueryFrame, QueryPreparer
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

STAGES = ("features", "retrieval", "matching", "ransac", "total")


class GpsPriors:
    """The drive's consumer GPS fixes in ``map``: the latest fix at most ``max_age_s`` old at a stamp."""

    def __init__(self, drive: DriveBag, origin: GeoOrigin, max_age_s: float = 1.0) -> None:
        series = drive.gps()
        if series is None or len(series) == 0:
            raise DriveLocalizationError(
                f"{drive.bag_path}: no consumer GPS fixes ({drive.topics.gps}) for a prior"
            )
        self.stamps_ns = series.stamps_ns
        self.xy = geodetic_to_enu(series.latitude_deg, series.longitude_deg, series.altitude_m, origin)[:, :2]
        self.covariance = series.covariance.reshape(-1, 3, 3)[:, :2, :2]
        self.max_age_ns = round(max_age_s * 1e9)

    def at(self, stamp_ns: int) -> PositionPrior | None:
        k = int(np.searchsorted(self.stamps_ns, stamp_ns, side="right")) - 1
        if k < 0 or stamp_ns - int(self.stamps_ns[k]) > self.max_age_ns:
            return None
        covariance = self.covariance[k]
        if not np.all(np.isfinite(covariance)) or np.any(np.diag(covariance) <= 0):
            return None
        return PositionPrior(int(self.stamps_ns[k]), self.xy[k], covariance)


@dataclass(frozen=True)
class FrameRecord:
    """One frame's outcome (what ``frames.csv`` holds)."""

    index: int
    stamp_ns: int
    status: str
    mode: str
    n_candidates: int
    n_matches: int
    n_inliers: int
    timings: StageTimings


@dataclass(frozen=True)
class DriveLocalization:
    """Everything an offline run produced."""

    estimates: list[PoseEstimate]
    records: list[FrameRecord]
    wall_s: float
    setup_s: float
    pipelined: bool

    @property
    def n_frames(self) -> int:
        return len(self.records)

    def stage_statistics(self) -> dict[str, dict[str, float]]:
        """Median, p95 and p99 of each stage over all frames (ms)."""
        table = {
            "features": [r.timings.features_ms for r in self.records],
            "retrieval": [r.timings.retrieval_ms for r in self.records],
            "matching": [r.timings.matching_ms for r in self.records],
            "ransac": [r.timings.ransac_ms for r in self.records],
            "total": [r.timings.total_ms for r in self.records],
        }
        out = {}
        for stage, values in table.items():
            if not values:
                continue
            p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
            out[stage] = {
                "median_ms": round(float(p50), 2),
                "p95_ms": round(float(p95), 2),
                "p99_ms": round(float(p99), 2),
            }
        return out

    def summary(self) -> dict[str, Any]:
        n = self.n_frames
        localized = len(self.estimates)
        modes = Counter(r.mode for r in self.records if r.status == "localized")
        return {
            "frames": n,
            "localized": localized,
            "continuity": round(localized / n, 4) if n else 0.0,
            "status_counts": dict(sorted(Counter(r.status for r in self.records).items())),
            "localized_by_mode": dict(sorted(modes.items())),
            "wall_s": round(self.wall_s, 3),
            "setup_s": round(self.setup_s, 3),
            "frames_per_s": round(n / self.wall_s, 2) if self.wall_s > 0 else None,
            "pipelined": self.pipelined,
            "stage_ms": self.stage_statistics(),
        }

    def frames_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [
                "index",
                "stamp_ns",
                "status",
                "mode",
                "candidates",
                "matches",
                "inliers",
                *(f"{s}_ms" for s in STAGES),
            ]
        )
        for r in self.records:
            t = r.timings
            writer.writerow(
                [
                    r.index,
                    r.stamp_ns,
                    r.status,
                    r.mode,
                    r.n_candidates,
                    r.n_matches,
                    r.n_inliers,
                    *(
                        f"{v:.3f}"
                        for v in (t.features_ms, t.retrieval_ms, t.matching_ms, t.ransac_ms, t.total_ms)
                    ),
                ]
            )
        return buffer.getvalue()


def _record(frame: Frame, result: LocalizationResult) -> FrameRecord:
    return FrameRecord(
        frame.index,
        frame.stamp_ns,
        result.status,
        result.mode,
        len(result.candidates),
        result.n_matches,
        result.n_inliers,
        result.timings,
    )


def _prepared_frames(
    localizer: Localizer, frames: Iterator[Frame], preparer: QueryPreparer, pipeline: bool
) -> Iterator[tuple[Frame, QueryFrame]]:
    """Frames with their features; with ``pipeline`` the next one is read and prepared on a worker
    thread while the caller processes the current one."""

    def prepare_next() -> tuple[Frame, QueryFrame] | None:
        frame = next(frames, None)
        if frame is None:
            return None
        # The state after the frame being processed is not known yet: guess from the state now.
        # A wrong guess costs time, never results (see the module docstring).
        with_on_demand = localizer.wants_on_demand(frame.stamp_ns)
        return frame, preparer.prepare(frame.image, frame.stamp_ns, with_on_demand)

    if not pipeline:
        while (item := prepare_next()) is not None:
            yield item
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoloc-prepare") as pool:
        pending: Future[tuple[Frame, QueryFrame] | None] = pool.submit(prepare_next)
        while (item := pending.result()) is not None:
            pending = pool.submit(prepare_next)
            yield item


def localize_drive(
    localizer: Localizer,
    drive: DriveBag,
    *,
    gps_priors: GpsPriors | None = None,
    max_frames: int | None = None,
    pipeline: bool = True,
    setup_s: float = 0.0,
) -> DriveLocalization:
    """Localize every frame of ``drive`` in order (see the module docstring)."""
    localizer.set_input_camera(drive.camera)
    preparer = localizer.new_preparer() if pipeline else localizer.preparer
    total = drive.n_frames if max_frames is None else min(max_frames, drive.n_frames)
    if total == 0:
        raise DriveLocalizationError(f"{drive.bag_path}: no camera frames on {drive.image_topic}")
    estimates: list[PoseEstimate] = []
    records: list[FrameRecord] = []
    start = time.perf_counter()
    frames = drive.frames(max_frames=max_frames)
    with progress_bar(total=total, desc="localize", unit="frame") as progress:
        for frame, query in _prepared_frames(localizer, frames, preparer, pipeline):
            prior = gps_priors.at(frame.stamp_ns) if gps_priors is not None else None
            result = localizer.localize_frame(query, prior)
            records.append(_record(frame, result))
            if result.estimate is not None:
                estimates.append(result.estimate)
            progress.update(1)
            progress.set_postfix(localized=f"{len(estimates)}/{len(records)}", refresh=False)
    wall = time.perf_counter() - start
    if not records:
        raise DriveLocalizationError(f"{drive.bag_path}: no decodable camera frames on {drive.image_topic}")
    logger.info(
        "localized %d of %d frames in %.1f s (%.1f frames/s)",
        len(estimates),
        len(records),
        wall,
        len(records) / wall,
    )
    return DriveLocalization(estimates, records, wall, setup_s, pipeline)


def write_outputs(
    out_dir: str | Path,
    result: DriveLocalization,
    localizer: Localizer,
    extra_summary: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the run's files (module docstring) into ``out_dir`` atomically; returns ``out_dir``."""
    target = Path(out_dir)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        with EstimateLogWriter(tmp / "estimates.jsonl") as log:
            log.write_all(result.estimates)
        if result.estimates:
            write_tum(tmp / "trajectory.tum", estimates_to_tum(result.estimates, planar=True))
        else:
            atomic_write_text(tmp / "trajectory.tum", "# no pose\n")
        atomic_write_text(tmp / "frames.csv", result.frames_csv())
        atomic_write_text(tmp / "config.yaml", dump_yaml(localizer.config))
        summary = {**result.summary(), **(extra_summary or {})}
        atomic_write_json(tmp / "summary.json", summary)
    return target
