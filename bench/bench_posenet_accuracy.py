"""PoseNet accuracy on a drive: single frame, causal temporal filter and offline smoother vs RTK.

Usage::

    .venv/bin/python bench/bench_posenet_accuracy.py --posenet models/posenet_standard.onnx \\
        --bag out/standard/drive [--map out/mapwork/standard_v1] [--baseline OTHER.onnx]
        [--temporal-config T.yaml] [--threads 2] [--max-frames N]

Runs each model on every frame of the drive exactly as ``geoloc posenet evaluate`` does
(:func:`geoloc_ros.pipelines.posenet_drive.evaluate_drive`: the distorted frame rectified onto the training
camera, the drive's camera mounting, the project's evaluation), and prints the project's table
with the seed's PoseNet figures beside it, then the headline figures against the targets of issue 15
(single frame: median <= 2 m, heading median <= 2 deg, mean below the seed's 7.62 m, 90-99 % of
the true positions inside the 95 % ellipse; with the temporal model: median <= 1 m). With
``--baseline``, the baseline model runs in the same process and the ratios of the medians
(model / baseline) are printed too.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from renamed_options import parse_args

from geoloc_ros.config import load_yaml
from geoloc_ros.evaluation.tables import PAPER_POSENET, format_text_table
from geoloc_ros.geometry.sources import SOURCE_POSENET, SOURCE_POSENET_SMOOTHED, SOURCE_POSENET_TEMPORAL
from geoloc_ros.pipelines.posenet_drive import DriveEvaluation, evaluate_drive
from geoloc_ros.posenet.temporal import TemporalConfig

PAPER_MEAN_M = 7.62  # seed slides, sequence 1, average error of the pose-regression CNN
PAPER_HEADING_DEG = 23.0  # seed summary slide, "~7 m and 23°"
TARGET_SINGLE_M = 2.0
TARGET_SINGLE_DEG = 2.0
TARGET_COVERAGE = (0.90, 0.99)
TARGET_TEMPORAL_M = 1.0
ROWS = (
    (SOURCE_POSENET, "single frame"),
    (SOURCE_POSENET_TEMPORAL, "causal temporal"),
    (SOURCE_POSENET_SMOOTHED, "smoothed (offline)"),
)


def headline(evaluation: DriveEvaluation) -> dict[str, tuple[float, float, float, float]]:
    """Per source: (median m, mean m, median heading deg, 95% coverage)."""
    out = {}
    for source, _ in ROWS:
        m = evaluation.result.sources[source].metrics
        out[source] = (
            float(m.median_error_m or float("nan")),
            float(m.mean_error_m or float("nan")),
            float(m.heading_median_deg or float("nan")),
            float(m.coverage_95 or float("nan")),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posenet", type=Path, required=True, help="exported PoseNet (.onnx)")
    parser.add_argument(
        "--bag", type=Path, required=True, help="drive directory (bag/ + camera_mounting.yaml)"
    )
    parser.add_argument("--map", type=Path, help="map bundle the model was trained on (origin check)")
    parser.add_argument("--baseline", type=Path, help="another model to compare with, in the same process")
    parser.add_argument("--temporal-config", type=Path, help="TemporalConfig YAML")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--max-frames", type=int, default=None)
    args = parse_args(parser)
    logging.basicConfig(level=logging.WARNING)

    origin = None
    if args.map is not None:
        from geoloc_ros.mapping.map import MapBundle

        origin = MapBundle.open(args.map, verify="sizes").origin
    temporal = load_yaml(args.temporal_config, TemporalConfig) if args.temporal_config else None

    def run(model: Path) -> DriveEvaluation:
        return evaluate_drive(
            model,
            args.bag,
            map_origin=origin,
            temporal=temporal,
            providers="cpu",
            max_frames=args.max_frames,
            intra_op_threads=args.threads,
        )

    evaluation = run(args.posenet)
    print(f"model {args.posenet} on {args.bag}: {evaluation.frame_stamps_ns.size} frames")
    print(format_text_table(evaluation.result.metrics, (PAPER_POSENET,)))
    figures = headline(evaluation)
    print(f"{'source':<22}{'median m':>10}{'mean m':>9}{'heading med':>13}{'in 95%':>8}{'mean / seed':>13}")
    for source, label in ROWS:
        median, mean, heading, coverage = figures[source]
        print(
            f"{label:<22}{median:>10.2f}{mean:>9.2f}{heading:>12.2f}°{100 * coverage:>7.1f}%"
            f"{mean / PAPER_MEAN_M:>13.3f}"
        )
    print(f"{'seed PoseNet':<22}{'—':>10}{PAPER_MEAN_M:>9.2f}{PAPER_HEADING_DEG:>12.2f}°")
    single, temporal_m = figures[SOURCE_POSENET], figures[SOURCE_POSENET_TEMPORAL]
    checks = [
        (f"single-frame median <= {TARGET_SINGLE_M:g} m", single[0] <= TARGET_SINGLE_M, f"{single[0]:.2f} m"),
        (
            f"single-frame heading median <= {TARGET_SINGLE_DEG:g} deg",
            single[2] <= TARGET_SINGLE_DEG,
            f"{single[2]:.2f} deg",
        ),
        (f"single-frame mean < seed's {PAPER_MEAN_M:g} m", single[1] < PAPER_MEAN_M, f"{single[1]:.2f} m"),
        (
            f"single frame inside its 95 % ellipse in [{TARGET_COVERAGE[0]:.0%}, {TARGET_COVERAGE[1]:.0%}]",
            TARGET_COVERAGE[0] <= single[3] <= TARGET_COVERAGE[1],
            f"{100 * single[3]:.1f} %",
        ),
        (
            f"causal temporal median <= {TARGET_TEMPORAL_M:g} m",
            temporal_m[0] <= TARGET_TEMPORAL_M,
            f"{temporal_m[0]:.2f} m",
        ),
        (
            f"smoothed median <= {TARGET_TEMPORAL_M:g} m",
            figures[SOURCE_POSENET_SMOOTHED][0] <= TARGET_TEMPORAL_M,
            f"{figures[SOURCE_POSENET_SMOOTHED][0]:.2f} m",
        ),
    ]
    print()
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {value}")
    print(
        f"inference incl. bag decoding and rectification: {evaluation.provider}, "
        f"{evaluation.summary()['inference_ms_per_frame']:.1f} ms/frame"
    )

    if args.baseline is not None:
        base = headline(run(args.baseline))
        print(f"\nbaseline {args.baseline}: ratios model / baseline of the medians")
        header = ("source", "base m", "model m", "ratio", "base deg", "model deg", "ratio")
        print(f"{header[0]:<22}" + "".join(f"{h:>10}" for h in header[1:]))
        for source, label in ROWS:
            b, m = base[source], figures[source]
            cells = (b[0], m[0], m[0] / b[0], b[2], m[2], m[2] / b[2])
            print(f"{label:<22}" + "".join(f"{c:>10.3f}" for c in cells))


if __name__ == "__main__":
    main()
