"""Benchmark: the BoVW localizer's accuracy and covariance calibration on a drive, from cached features.

Query features are a deterministic function of the image (:mod:`geoloc_ros.localize.query`), so
they can be extracted once (``--cache FILE``, written when missing: every frame with the on-demand
kinds too) and the localizer re-run on them in minutes while its settings or code change. The
figures are those of ``bench/bench_localize.py``'s offline pass and of ``geoloc evaluate``'s BoVW
column (same evaluation), without their feature-extraction time; no timings are reported.

Prints continuity, the share of localized frames within 1 m and 2 m, median / p95 / max error,
the share of true positions inside the published 95 % ellipse, the mean position NEES, the median
heading error, the frame statuses and the load; ``--frames FILE`` writes one JSON line per frame
(status, mode, error, NEES, the estimate's info) for analysis.

    .venv/bin/python bench/bench_localize_cached.py --bag DRIVE --map MAP --cache FEATURES.pkl \\
        [--config localize.yaml] [--frames frames.jsonl] [--estimates estimates.jsonl]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from geoloc_ros.evaluation import evaluate_sources
from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.geometry.sources import SOURCE_BOVW
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.estimates import EstimateLogWriter
from geoloc_ros.localize.config import load_localizer_config
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.localize.query import QueryFrame
from geoloc_ros.mapping.map import MapBundle


def cached_frames(localizer: Localizer, drive: DriveBag, cache: Path) -> list[QueryFrame]:
    """Every frame's features (with the on-demand kinds), from ``cache`` or extracted into it."""
    if cache.exists():
        with cache.open("rb") as handle:
            frames: list[QueryFrame] = pickle.load(handle)
        return frames
    frames = []
    for frame in drive.frames():
        query = localizer.preparer.prepare(frame.image, frame.stamp_ns, with_on_demand=True)
        # The grey image is only needed to add on-demand features later: these have them all.
        frames.append(replace(query, grey=np.zeros((1, 1), np.uint8)))
    with cache.open("wb") as handle:
        pickle.dump(frames, handle)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True, help="features cache (written when missing)")
    parser.add_argument("--config", type=Path, help="LocalizerConfig YAML (default: the defaults)")
    parser.add_argument("--frames", type=Path, help="write one JSON line per frame here")
    parser.add_argument(
        "--estimates", type=Path, help="write the poses as an estimates.jsonl (for bench_fusion_map_error.py)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bundle = MapBundle.open(args.map, verify="sizes")
    drive = DriveBag(args.bag)
    config = load_localizer_config(args.config)
    frames = cached_frames(Localizer(bundle, config, drive.mounting, drive.camera), drive, args.cache)
    localizer = Localizer(bundle, config, drive.mounting, drive.camera)
    truth = drive_ground_truth(drive, bundle.origin)
    stamps = np.array([q.stamp_ns for q in frames], dtype=np.int64)
    at = truth.at(stamps)
    start_cpu = time.process_time()
    estimates, records = [], []
    for k, query in enumerate(frames):
        result = localizer.localize_frame(query)
        record: dict[str, object] = {"frame": k, "stamp_ns": query.stamp_ns, "status": result.status}
        record["mode"] = result.mode
        if result.estimate is not None:
            estimates.append(result.estimate)
            d = result.estimate.pose.translation[:2] - at.positions[k, :2]
            cov = result.estimate.covariance[:2, :2]
            record["error_m"] = float(np.hypot(*d))
            record["nees"] = float(d @ np.linalg.solve(cov, d))
            record["info"] = {key: v for key, v in result.estimate.info.items() if key != "timings_ms"}
        records.append(record)
    cpu_s = time.process_time() - start_cpu
    metrics = (
        evaluate_sources({SOURCE_BOVW: estimates}, truth, frame_stamps_ns=stamps).sources[SOURCE_BOVW].metrics
    )
    errors = np.array([r["error_m"] for r in records if np.isfinite(r.get("error_m", np.nan))])  # type: ignore[arg-type]
    print(f"map {bundle.path}; bag {drive.bag_path}: {len(frames)} frames")
    print(
        f"continuity {metrics.n_localized}/{metrics.n_frames} = {100 * metrics.continuity:.1f}%; "
        f"within 1 m / 2 m: {100 * np.mean(errors < 1):.1f}% / {100 * np.mean(errors < 2):.1f}% "
        f"of localized; error median {np.median(errors):.3f} m, p95 {np.percentile(errors, 95):.2f} m, "
        f"max {errors.max():.2f} m; "
        f"heading median {metrics.heading_median_deg:.3f} deg"
    )
    print(
        f"covariance: {100 * (metrics.coverage_95 or 0):.1f}% inside the 95% ellipse, "
        f"mean NEES position {metrics.mean_nees_position:.2f} (2 dof)"
    )
    print(f"status: {dict(Counter(str(r['status']) for r in records))}")
    print(f"localizer CPU {cpu_s:.0f} s; load average {os.getloadavg()[0]:.1f} (1 min)")
    if args.estimates:
        writer = EstimateLogWriter(args.estimates, overwrite=True)
        writer.write_all(estimates)
        writer.close()
    if args.frames:
        with args.frames.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
