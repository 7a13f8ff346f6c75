"""PoseNet's temporal model on a drive: how informative the per-frame uncertainty is, and a sweep
of the causal filter's settings on the same per-frame estimates.

Usage::

    .venv/bin/python bench/bench_posenet_temporal.py --posenet M.onnx --bag DRIVE [--map MAP]
        [--threads 1] [--set measurement_covariance_scale=0.5,1,2 --set accel_std=0.75,1.5,3 ...]

The model runs once over the drive (exactly as ``bench_posenet_accuracy.py``); then:

- **per-frame uncertainty**: the rank correlation (Spearman) between the predicted position
  standard deviation and the true error, and the median error of the frames in each quarter of
  the predicted standard deviation (an informative uncertainty has a clear positive trend);
- **sweep**: the causal filter (:class:`geoloc_ros.posenet.temporal.CausalPoseFilter`) and the
  smoother run with each combination of the ``--set`` values (``TemporalConfig`` fields) on the
  same estimates: median / mean position error, median heading error, share inside the 95 %
  ellipse and share of frames the gate accepted. The defaults come first.

The sweep is measured on the drive it is chosen on: a setting that wins here must hold on
another drive before it becomes a default.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.evaluation.metrics import evaluate_sources
from geoloc_ros.geometry.sources import SOURCE_POSENET, SOURCE_POSENET_SMOOTHED, SOURCE_POSENET_TEMPORAL
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.posenet_drive import (
    drive_predictor,
    model_map_origin,
    predict_frames,
    temporal_sequences,
)
from geoloc_ros.posenet.temporal import TemporalConfig


def parse_sets(items: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in TemporalConfig.model_fields:
            raise SystemExit(f"--set {item}: {name!r} is not a TemporalConfig field")
        grid[name] = [float(v) if "." in v or "e" in v else int(v) for v in values.split(",")]
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posenet", type=Path, required=True, help="exported PoseNet ONNX")
    parser.add_argument(
        "--bag", type=Path, required=True, help="drive directory (bag/ + camera_mounting.yaml)"
    )
    parser.add_argument("--map", type=Path, help="map bundle the model was trained on (origin check)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2", dest="sets")
    args = parser.parse_args()
    grid = parse_sets(args.sets)

    drive = DriveBag(args.bag)
    predictor = drive_predictor(args.posenet, drive, "cpu", args.threads)
    map_origin = MapBundle.open(args.map, verify="none").origin if args.map else None
    origin = model_map_origin(predictor.info.map_origin, map_origin, str(args.posenet))
    truth = drive_ground_truth(drive, origin)
    estimates, stamps = predict_frames(predictor, drive.frames(), total=drive.n_frames)
    print(f"{args.posenet} on {args.bag}: {len(estimates)} frames")

    at = truth.at([e.stamp_ns for e in estimates])
    valid = at.status == 0
    error = np.array(
        [np.linalg.norm(e.position[:2] - p[:2]) for e, p in zip(estimates, at.positions, strict=True)]
    )
    std = np.array([float(e.info["position_std_m"]) for e in estimates])
    error, std = error[valid], std[valid]
    print(
        f"per-frame: predicted position std median {np.median(std):.2f} m; Spearman(std, error) = "
        f"{spearmanr(std, error).statistic:.2f} over {valid.sum()} frames"
    )
    edges = np.quantile(std, [0, 0.25, 0.5, 0.75, 1.0])
    for k in range(4):
        inside = (std >= edges[k]) & (std <= edges[k + 1])
        print(
            f"  std quarter {k + 1} ({edges[k]:.2f}-{edges[k + 1]:.2f} m): median error "
            f"{np.median(error[inside]):.2f} m, mean {np.mean(error[inside]):.2f} m"
        )

    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    header = (
        f"{'settings':<58}{'temporal med':>13}{'mean':>7}{'head':>7}{'in95':>7}{'accept':>8}"
        f"{'smooth med':>11}{'mean':>7}"
    )
    print(header)
    print("-" * len(header))
    for overrides in [{}, *combos]:
        started = time.process_time()
        config = TemporalConfig(**overrides)
        sequences = temporal_sequences(estimates, config)
        result = evaluate_sources(
            {k: v for k, v in sequences.items() if k != SOURCE_POSENET}, truth, frame_stamps_ns=stamps
        )
        causal = result.sources[SOURCE_POSENET_TEMPORAL].metrics
        smooth = result.sources[SOURCE_POSENET_SMOOTHED].metrics
        accepted = np.mean([bool(e.info["accepted"]) for e in sequences[SOURCE_POSENET_TEMPORAL]])
        label = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(defaults)"
        print(
            f"{label:<58}{causal.median_error_m:>13.2f}{causal.mean_error_m:>7.2f}"
            f"{causal.heading_median_deg:>7.2f}{100 * (causal.coverage_95 or 0):>6.1f}%"
            f"{100 * accepted:>7.1f}%{smooth.median_error_m:>11.2f}{smooth.mean_error_m:>7.2f}"
            f"   ({time.process_time() - started:.1f} s CPU)",
            flush=True,
        )


if __name__ == "__main__":
    main()
