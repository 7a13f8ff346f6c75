"""Fused covariance on imperfect maps: re-fuse a report's recorded BoVW estimates with the drive's
consumer GPS, the BoVW poses taken as independent (before) and with the map's stated pose
uncertainty modelled as a bias (fusion.config.MapErrorConfig), and print the fused figures.

    .venv/bin/python bench/bench_fusion_map_error.py --bag DRIVE --map MAP \\
        --estimates REPORT/estimates.jsonl \\
        [--posenet-estimates POSENET_REPORT/estimates.jsonl --posenet MODEL.onnx]

With PoseNet estimates (``geoloc posenet evaluate MODEL --bag DRIVE --map MAP --out DIR`` writes
them), a third row fuses them too (BoVW + PoseNet + GPS, the sources ``geoloc evaluate --posenet``
fuses; PoseNet at most once a second, ``min_update_interval_s``), a fourth every PoseNet pose (the
filter before that setting), and the PoseNet updates the filter accepted and rejected are printed.
The model is checked to have been trained on ``--map`` (as ``geoloc evaluate`` does): estimates of
a model trained on another map would be in another frame. Only fusion runs (seconds).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from renamed_options import parse_args

from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.evaluation.metrics import evaluate_sources
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.geometry.sources import SOURCE_BOVW, SOURCE_FUSED, SOURCE_POSENET
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.estimates import group_by_source, read_estimates
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.evaluate_drive import gps_fixes
from geoloc_ros.pipelines.fuse_drive import fuse_offline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bag", type=Path, required=True, help="drive folder (bag + RTK)")
    parser.add_argument("--map", type=Path, required=True, help="map bundle the estimates were made on")
    parser.add_argument("--estimates", type=Path, required=True, help="estimates.jsonl of a report")
    parser.add_argument(
        "--posenet-estimates", type=Path, help="estimates.jsonl with PoseNet poses (source 'posenet')"
    )
    parser.add_argument("--posenet", type=Path, help="the model that made them (map check)")
    args = parse_args(parser)
    if (args.posenet_estimates is None) != (args.posenet is None):
        parser.error("--posenet-estimates and --posenet go together")
    logging.disable(logging.INFO)

    drive = DriveBag(args.bag)
    bundle = MapBundle.open(args.map, verify="none")
    frames = drive.frame_stamps()
    bovw = group_by_source(read_estimates(args.estimates))[SOURCE_BOVW]
    posenet = []
    if args.posenet_estimates is not None:
        from geoloc_ros.posenet.inference import read_model_info

        print(read_model_info(args.posenet).check_map(bundle.bundle_id, bundle.origin, str(args.map)))
        posenet = group_by_source(read_estimates(args.posenet_estimates)).get(SOURCE_POSENET, [])
        if not posenet:
            parser.error(f"{args.posenet_estimates}: no '{SOURCE_POSENET}' estimate")
    fixes = gps_fixes(drive)
    truth = drive_ground_truth(drive, bundle.origin)
    stated = bundle.stated_pose_sigma()
    print(f"map states a panorama pose sigma of {stated[0]:.2f} m / {stated[1]:.2f} deg")
    print(
        "fusion                         | continuity | median m | max m | within 1 m | inside 95 % "
        "| NEES (2 dof) | heading median"
    )
    runs = [
        ("independent (before)", FusionConfig(), []),
        ("map error modelled", FusionConfig().with_map_error(*stated), []),
    ]
    if posenet:
        fused = FusionConfig().with_map_error(*stated)
        runs.append(("map error modelled + PoseNet", fused, posenet))
        sources = dict(fused.pose_sources)
        sources[SOURCE_POSENET] = sources[SOURCE_POSENET].model_copy(update={"min_update_interval_s": 0.0})
        every_frame = fused.model_copy(update={"pose_sources": sources})
        runs.append(("+ PoseNet at camera rate", every_frame, posenet))
    for name, config, extra in runs:
        run = fuse_offline([*bovw, *extra, *fixes], frames, config, origin=bundle.origin)
        (m,) = evaluate_sources(
            {SOURCE_FUSED: run.estimates}, truth, frame_stamps_ns=frames, n_frames=len(frames)
        ).metrics
        print(
            f"{name:30s} | {m.continuity:10.2%} | {m.median_error_m:8.3f} | {m.max_error_m:5.2f} | "
            f"{m.recall_at_m['1m'] or 0.0:10.2%} | "
            f"{m.coverage_95:11.2%} | {m.mean_nees_position:12.2f} | {m.heading_median_deg:.3f} deg"
        )
        if extra:
            counters = run.diagnostics.sources.get(SOURCE_POSENET)
            if counters is not None:
                nis = counters.mean_nis
                print(
                    f"  PoseNet updates: {counters.received} received, {counters.accepted} accepted "
                    f"(mean NIS {nis if nis is None else round(nis, 2)}, 3 dof), rejected "
                    f"{dict(sorted(counters.rejected.items()))}"
                )


if __name__ == "__main__":
    main()
