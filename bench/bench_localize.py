"""Benchmark: the BoVW + PnP-RANSAC localizer on a drive (accuracy, covariance calibration, speed).

Three measurements in one process, on the same bag and map bundle:

1. **Offline** (what ``geoloc localize`` does): every frame in order, the next frame's features
   extracted on a second thread. Prints the seed-style accuracy table (our figures beside the
   seed's: 281/1046 = 26.9% continuity, 3.19 m mean error, bins 41.28 / 27.40 / 19.22 / 12.10 % for
   0-1 / 1-2 / 2-3 / 3-4 m) computed by :mod:`geoloc_ros.evaluation` against the bag's RTK fixes,
   covariance coverage (share of true positions inside the published 95% ellipse) and NEES, the
   per-stage timing (median / p95 / p99 of features, retrieval, matching, RANSAC, total) and the
   throughput.
2. **Node-style latency**: a fresh localizer, one frame at a time on one thread (rectify, features,
   localize: what ``bovw_localizer`` does for each newest frame), end-to-end latency per frame and
   the process CPU time per frame (what a frame costs whatever else runs on the machine).
3. Optionally (``--compare-backends``) the node-style pass with both PnP-RANSAC backends (poselib's
   LO-RANSAC and OpenCV's ``solvePnPRansac`` with USAC_MAGSAC), on the same frames: the RANSAC stage
   time and the accuracy of each.

Timings depend on the machine and on what else runs on it: report medians and compare runs of
the same process only.

    .venv/bin/python bench/bench_localize.py --bag out/standard/drive --map out/maps/standard \\
        [--config localize.yaml] [--max-frames N] [--latency-frames N] [--compare-backends] \\
        [--frame-widths 1920 1280 640] [--no-offline] [--json-out out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from renamed_options import parse_args

from geoloc_ros.evaluation import PAPER_BOVW_AUGMENTED, evaluate_sources, format_text_table
from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_BOVW
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.localize.config import LocalizerConfig, load_localizer_config
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.localize_drive import localize_drive

STAGES = ("features", "retrieval", "matching", "ransac", "total")


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return {"median_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def timing_lines(title: str, table: dict[str, dict[str, float]]) -> str:
    lines = [title, f"  {'stage':<10} {'median':>8} {'p95':>8} {'p99':>8}  ms"]
    for stage, stats in table.items():
        lines.append(
            f"  {stage:<10} {stats['median_ms']:>8.1f} {stats['p95_ms']:>8.1f} {stats['p99_ms']:>8.1f}"
        )
    return "\n".join(lines)


def node_style_pass(
    bundle: MapBundle,
    drive: DriveBag,
    config: LocalizerConfig,
    max_frames: int | None,
    frame_width: int | None = None,
) -> tuple[list[PoseEstimate], dict[str, dict[str, float]], np.ndarray]:
    """One frame at a time on this thread: estimates, per-stage timings (with the end-to-end latency)
    and the stamps of the frames processed. ``frame_width``: the bag's frames resized to that width
    (INTER_AREA) with the camera scaled alike, as a camera of that resolution behind the same
    lens would give them (the resize is not timed)."""
    camera = drive.camera if frame_width is None else drive.camera.scaled(frame_width / drive.camera.width)
    localizer = Localizer(bundle, config, drive.mounting, camera)
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    latency: list[float] = []
    cpu: list[float] = []
    estimates: list[PoseEstimate] = []
    stamps: list[int] = []
    for frame in drive.frames(max_frames=max_frames):
        stamps.append(frame.stamp_ns)
        image = frame.image
        if camera.size != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, camera.size, interpolation=cv2.INTER_AREA)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = localizer.localize(image, frame.stamp_ns)
        latency.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
        t = result.timings
        for stage, value in zip(
            STAGES, (t.features_ms, t.retrieval_ms, t.matching_ms, t.ransac_ms, t.total_ms), strict=True
        ):
            stages[stage].append(value)
        if result.estimate is not None:
            estimates.append(result.estimate)
    table = {stage: percentiles(values) for stage, values in stages.items()}
    table["end-to-end"] = percentiles(latency)
    # CPU time of the process per frame: what the frame costs, whatever else runs on the machine
    # (on an idle machine the one-thread path's wall time is about this).
    table["cpu"] = percentiles(cpu)
    return estimates, table, np.asarray(stamps, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, default=Path("out/standard/drive"))
    parser.add_argument("--map", type=Path, default=Path("out/maps/standard"))
    parser.add_argument("--config", type=Path, help="LocalizerConfig YAML (default: the defaults)")
    parser.add_argument("--max-frames", type=int, help="only the first N frames (offline pass)")
    parser.add_argument("--latency-frames", type=int, default=None, help="frames of the node-style pass")
    parser.add_argument("--no-latency", action="store_true", help="skip the node-style pass")
    parser.add_argument("--compare-backends", action="store_true", help="also run OpenCV USAC_MAGSAC")
    parser.add_argument(
        "--frame-widths",
        type=int,
        nargs="+",
        help="node-style passes with the frames resized to these widths (camera scaled alike); "
        "default: the bag's size only",
    )
    parser.add_argument("--no-offline", action="store_true", help="skip the offline accuracy pass")
    parser.add_argument("--json-out", type=Path, help="write every figure as JSON here")
    args = parse_args(parser)
    logging.basicConfig(level=logging.WARNING)

    config = load_localizer_config(args.config)
    started = time.perf_counter()
    bundle = MapBundle.open(args.map, verify="sizes")
    drive = DriveBag(args.bag)
    localizer = Localizer(bundle, config, drive.mounting, drive.camera)
    setup_s = time.perf_counter() - started
    print(f"map {bundle.path}: {bundle.n_views} views; bag {drive.bag_path}: {drive.n_frames} frames")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (1 min) at start")
    print(f"setup (open map, build localizer): {setup_s:.2f} s")

    truth = drive_ground_truth(drive, bundle.origin)
    report: dict[str, Any] = {"map": str(bundle.path), "views": bundle.n_views, "bag": str(drive.bag_path)}
    if not args.no_offline:
        report.update(offline_pass(localizer, drive, truth, args.max_frames, setup_s))
    passes = [] if args.no_latency else [config.pose.backend]
    if args.compare_backends:
        passes += [b for b in ("poselib", "opencv") if b not in passes]
    widths: list[int | None] = list(args.frame_widths) if args.frame_widths else [None]
    report["node_style"] = {}
    for backend in passes:
        cfg = config.model_copy(update={"pose": config.pose.model_copy(update={"backend": backend})})
        for width in widths:
            estimates, table, stamps = node_style_pass(bundle, drive, cfg, args.latency_frames, width)
            m = (
                evaluate_sources({SOURCE_BOVW: estimates}, truth, frame_stamps_ns=stamps)
                .sources[SOURCE_BOVW]
                .metrics
            )
            size = (
                drive.camera.size if width is None else drive.camera.scaled(width / drive.camera.width).size
            )
            key = backend if len(widths) == 1 else f"{backend} {size[0]}x{size[1]}"
            report["node_style"][key] = {
                "frame_size": list(size),
                "timings": table,
                "frames": len(stamps),
                "localized": len(estimates),
                "median_error_m": m.median_error_m,
            }
            print()
            title = f"node-style latency, {backend}, {size[0]}x{size[1]} (one frame at a time, one thread):"
            print(timing_lines(title, table))
            print(
                f"  {len(estimates)}/{len(stamps)} frames localized, median error {m.median_error_m:.4f} m, "
                f"median heading error {m.heading_median_deg:.3f} deg"
            )
    print(f"load average {os.getloadavg()[0]:.1f} (1 min) at the end")
    report["config"] = config.model_dump(mode="json")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")


def offline_pass(
    localizer: Localizer, drive: DriveBag, truth: Any, max_frames: int | None, setup_s: float
) -> dict[str, Any]:
    """What ``geoloc localize`` does, with the accuracy table printed; the report's figures."""
    offline = localize_drive(localizer, drive, max_frames=max_frames, pipeline=True, setup_s=setup_s)
    frame_stamps = np.array([r.stamp_ns for r in offline.records], dtype=np.int64)
    evaluation = evaluate_sources({SOURCE_BOVW: offline.estimates}, truth, frame_stamps_ns=frame_stamps)
    metrics = evaluation.sources[SOURCE_BOVW].metrics
    print()
    print(format_text_table([metrics], [PAPER_BOVW_AUGMENTED]))
    within_2m = None
    if metrics.error_bins is not None:
        within_2m = metrics.error_bins["0-1m"] + metrics.error_bins["1-2m"]
    report: dict[str, Any] = {
        "accuracy": metrics.as_dict(),
        "within_2m_of_localized": within_2m,
        "offline": offline.summary(),
    }
    print(
        f"continuity {metrics.n_localized}/{metrics.n_frames} = {100 * metrics.continuity:.1f}%; "
        f"within 2 m: {100 * (within_2m or 0):.2f}% of localized; median error "
        f"{metrics.median_error_m:.3f} m; median heading error {metrics.heading_median_deg:.3f} deg"
    )
    print(
        f"covariance: {100 * (metrics.coverage_95 or 0):.1f}% of true positions inside the 95% ellipse "
        f"({metrics.n_covariance} frames); mean NEES position {metrics.mean_nees_position:.2f} (2 dof), "
        f"pose {metrics.mean_nees_pose:.2f} (3 dof)"
    )
    summary = offline.summary()
    frames, wall, rate = summary["frames"], summary["wall_s"], summary["frames_per_s"]
    print(f"offline: {frames} frames in {wall:.1f} s = {rate} frames/s")
    print(f"status: {summary['status_counts']}; localized by mode: {summary['localized_by_mode']}")
    print(
        timing_lines(
            "offline per-frame stage times (pipelined; features overlap the rest):", summary["stage_ms"]
        )
    )
    return report


if __name__ == "__main__":
    main()
