"""Run every localization source on a recorded drive and evaluate them against its RTK ground truth.

The offline twin of the live stack (``geoloc evaluate``): BoVW + PnP-RANSAC, PoseNet (single frame,
causal temporal filter, bidirectional smoother), consumer GPS, and the fusion of BoVW + PoseNet + GPS,
all on message time, deterministic, as fast as the machine allows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from geoloc_ros.config import StrictModel
from geoloc_ros.evaluation.groundtruth import GroundTruth
from geoloc_ros.evaluation.metrics import EvaluationResult, evaluate_sources, hold_at_frames
from geoloc_ros.evaluation.report import ReportFiles, write_report
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.measurements import GpsFix, estimate_from_position, position_from_gps_fix
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import (
    SOURCE_BOVW,
    SOURCE_FUSED,
    SOURCE_GPS,
    SOURCE_ORDER,
    SOURCE_POSENET,
)
from geoloc_ros.io.drive import DriveBag, DriveTopics
from geoloc_ros.io.estimates import write_estimates
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.fuse_drive import FusionRun, fuse_offline
from geoloc_ros.pipelines.localize_drive import GpsPriors, localize_drive

logger = logging.getLogger(__name__)


class EvaluateConfig(StrictModel):
    topics: DriveTopics = DriveTopics()
    localizer: LocalizerConfig = LocalizerConfig()
    fusion: FusionConfig = FusionConfig()
    bovw_gps_prior: bool = Field(False, description="let BoVW use consumer GPS as a search prior")
    fuse_gps: bool = Field(True, description="fuse consumer GPS fixes")
    gps_hold_s: float = Field(1.0, gt=0.0, description="a GPS fix counts for camera frames this long")
    posenet_threads: int = Field(0, ge=0, description="onnxruntime threads (0 = one per core)")
    posenet_batch_size: int = Field(
        1, ge=1, description="frames per PoseNet inference call (estimates agree within 1e-4 m across sizes)"
    )
    max_frames: int | None = Field(None, ge=1, description="evaluate only the first frames")


@dataclass
class DriveRun:
    """Every source's estimates on one drive, with what the report needs besides the metrics."""

    frame_stamps_ns: np.ndarray
    estimates: dict[str, list[PoseEstimate]]
    timings_s: dict[str, float] = field(default_factory=dict)
    bovw_summary: dict[str, Any] = field(default_factory=dict)
    fusion: FusionRun | None = None


def gps_fixes(drive: DriveBag) -> list[GpsFix]:
    series = drive.gps()
    if series is None:
        return []
    return [
        GpsFix(int(s), float(lat), float(lon), float(alt), cov, int(kind), 0, SOURCE_GPS)
        for s, lat, lon, alt, cov, kind in zip(
            series.stamps_ns,
            series.latitude_deg,
            series.longitude_deg,
            series.altitude_m,
            series.covariance,
            series.covariance_type,
            strict=True,
        )
    ]


def run_drive(
    drive: DriveBag,
    bundle: MapBundle,
    posenet_model: str | Path | None = None,
    config: EvaluateConfig | None = None,
) -> DriveRun:
    """Every source on ``drive``; PoseNet sources only when a model is given."""
    cfg = config or EvaluateConfig()
    if posenet_model is not None:  # a model trained on another map is refused (names both), as the node does
        from geoloc_ros.posenet.inference import read_model_info

        info = read_model_info(posenet_model)
        logger.info(info.check_map(bundle.bundle_id, bundle.origin, str(bundle.path)))
    timings: dict[str, float] = {}
    frame_stamps = drive.frame_stamps()
    if cfg.max_frames is not None:
        frame_stamps = frame_stamps[: cfg.max_frames]
    estimates: dict[str, list[PoseEstimate]] = {}

    start = time.perf_counter()
    localizer = Localizer(bundle, cfg.localizer, mounting=drive.mounting, input_camera=drive.camera)
    priors = GpsPriors(drive, bundle.origin) if cfg.bovw_gps_prior else None
    bovw = localize_drive(localizer, drive, gps_priors=priors, max_frames=cfg.max_frames)
    estimates[SOURCE_BOVW] = bovw.estimates
    timings["bovw_s"] = time.perf_counter() - start

    if posenet_model is not None:
        from geoloc_ros.pipelines.posenet_drive import drive_predictor, run_posenet_drive

        start = time.perf_counter()
        predictor = drive_predictor(posenet_model, drive, intra_op_threads=cfg.posenet_threads)
        posenet = run_posenet_drive(
            predictor, drive, batch_size=cfg.posenet_batch_size, max_frames=cfg.max_frames
        )
        estimates.update(posenet.estimates)
        timings["posenet_s"] = time.perf_counter() - start

    fixes = gps_fixes(drive)
    if fixes:
        gps_estimates = [estimate_from_position(position_from_gps_fix(f, bundle.origin)) for f in fixes]
        estimates[SOURCE_GPS] = hold_at_frames(gps_estimates, frame_stamps, cfg.gps_hold_s)

    start = time.perf_counter()
    measurements: list[Any] = [*estimates[SOURCE_BOVW], *estimates.get(SOURCE_POSENET, [])]
    if cfg.fuse_gps:
        measurements += [f for f in fixes if f.stamp_ns <= frame_stamps[-1]]
    # The map's stated pose uncertainty is a bias BoVW poses share (fusion.config.MapErrorConfig).
    fusion_config = cfg.fusion.with_map_error(*bundle.stated_pose_sigma())
    fusion = fuse_offline(measurements, frame_stamps, fusion_config, origin=bundle.origin)
    estimates[SOURCE_FUSED] = fusion.estimates
    timings["fusion_s"] = time.perf_counter() - start
    return DriveRun(frame_stamps, estimates, timings, bovw.summary(), fusion)


def evaluate_run(run: DriveRun, ground_truth: GroundTruth) -> EvaluationResult:
    ordered = {s: run.estimates[s] for s in SOURCE_ORDER if s in run.estimates}
    return evaluate_sources(
        ordered, ground_truth, frame_stamps_ns=run.frame_stamps_ns, n_frames=len(run.frame_stamps_ns)
    )


def write_run_report(
    out_dir: str | Path,
    run: DriveRun,
    result: EvaluationResult,
    bundle: MapBundle,
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> ReportFiles:
    """The evaluation report (Markdown, JSON, figures, TUM) plus every estimate (estimates.jsonl)."""
    diagnostics = {
        "bovw": run.bovw_summary,
        "fusion": run.fusion.diagnostics.as_dict() if run.fusion is not None else {},
        "timings_s": {k: round(v, 2) for k, v in run.timings_s.items()},
    }
    files = write_report(
        out_dir,
        result,
        panoramas_xy=np.asarray(bundle.panorama_positions)[:, :2],
        metadata=metadata,
        diagnostics=diagnostics,
        overwrite=overwrite,
    )
    write_estimates(
        Path(out_dir) / "estimates.jsonl", [e for s in SOURCE_ORDER for e in run.estimates.get(s, [])]
    )
    return files
