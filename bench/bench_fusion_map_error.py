"""Fused covariance on imperfect maps: re-fuse a report's recorded BoVW estimates with the drive's
consumer GPS, the BoVW poses taken as independent (before) and with the map's stated pose
uncertainty modelled as a bias (fusion.config.MapErrorConfig), and print the fused figures.

    .venv/bin/python bench/bench_fusion_map_error.py --drive DRIVE --map MAP \\
        --estimates REPORT/estimates.jsonl

Only fusion runs (seconds): both rows fuse the same BoVW poses.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.evaluation.metrics import evaluate_sources
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.geometry.sources import SOURCE_BOVW, SOURCE_FUSED
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.estimates import group_by_source, read_estimates
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.evaluate_drive import gps_fixes
from geoloc_ros.pipelines.fuse_drive import fuse_offline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drive", type=Path, required=True, help="drive folder (bag + RTK)")
    parser.add_argument("--map", type=Path, required=True, help="map bundle the estimates were made on")
    parser.add_argument("--estimates", type=Path, required=True, help="estimates.jsonl of a report")
    args = parser.parse_args()
    logging.disable(logging.INFO)

    drive = DriveBag(args.drive)
    bundle = MapBundle.open(args.map, verify="none")
    frames = drive.frame_stamps()
    bovw = group_by_source(read_estimates(args.estimates))[SOURCE_BOVW]
    fixes = gps_fixes(drive)
    truth = drive_ground_truth(drive, bundle.origin)
    stated = bundle.stated_pose_sigma()
    print(f"map states a panorama pose sigma of {stated[0]:.2f} m / {stated[1]:.2f} deg")
    print(
        "fusion               | continuity | median m | max m | within 1 m | inside 95 % | NEES (2 dof) "
        "| heading median"
    )
    for name, config in (
        ("independent (before)", FusionConfig()),
        ("map error modelled", FusionConfig().with_map_error(*stated)),
    ):
        run = fuse_offline([*bovw, *fixes], frames, config, origin=bundle.origin)
        (m,) = evaluate_sources(
            {SOURCE_FUSED: run.estimates}, truth, frame_stamps_ns=frames, n_frames=len(frames)
        ).metrics
        print(
            f"{name:20s} | {m.continuity:10.2%} | {m.median_error_m:8.3f} | {m.max_error_m:5.2f} | "
            f"{m.recall_at_m['1m'] or 0.0:10.2%} | "
            f"{m.coverage_95:11.2%} | {m.mean_nees_position:12.2f} | {m.heading_median_deg:.3f} deg"
        )


if __name__ == "__main__":
    main()
