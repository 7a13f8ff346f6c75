"""Benchmark: fusion filter throughput on a synthetic drive (BoVW + PoseNet + consumer GPS).

Feeds the measurement stream of a simulated town drive to
:class:`geoloc_ros.fusion.PlanarFusionFilter` and prints the median updates per second over the
repeats, for three feeds measured in the same process:

- ``in order``: measurements in stamp order (the baseline);
- ``live arrival``: the order a node receives them, BoVW 80 ms late and PoseNet 10 ms late, so
  late BoVW results are inserted into the history and later measurements re-applied;
- ``live + output``: the live feed plus one fused pose requested per camera frame.

It also prints the share of one core the filter needs at the camera rate (20 Hz BoVW and
PoseNet, 5 Hz GPS) and the fused accuracy, so a faster configuration cannot hide a worse one.

    .venv/bin/python bench/bench_fusion.py [--duration 120] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from synthetic_drive import (
    BOVW_LIKE,
    POSENET_LIKE,
    arrival_order,
    simulate_gps_stream,
    simulate_pose_stream,
    simulate_town_drive,
)

from geoloc_ros.fusion import PlanarFusionFilter
from geoloc_ros.pipelines.fuse_drive import fuse_offline


def _timed(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Median seconds of ``run`` over ``repeats`` (after one warm-up) and its update count."""
    count = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="simulated drive length (s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    drive = simulate_town_drive(args.duration, 20.0, seed=args.seed)
    streams = {
        "bovw": simulate_pose_stream(drive, BOVW_LIKE, seed=args.seed + 1),
        "posenet": simulate_pose_stream(drive, POSENET_LIKE, seed=args.seed + 2),
        "gps": simulate_gps_stream(drive, seed=args.seed + 3),
    }
    in_order = sorted((m for s in streams.values() for m in s), key=lambda m: (m.stamp_ns, m.source))
    live = arrival_order(streams, {"bovw": 0.08, "posenet": 0.01, "gps": 0.0})
    frames = drive.stamps_ns.tolist()

    def feed(measurements: list) -> Callable[[], int]:
        def run() -> int:
            fusion = PlanarFusionFilter()
            for m in measurements:
                fusion.add(m)
            return len(measurements)

        return run

    def feed_with_outputs() -> int:
        fusion = PlanarFusionFilter()
        next_frame = 0
        for m in live:
            fusion.add(m)
            # Publish every frame whose slowest measurement (BoVW, 80 ms) has had time to arrive.
            while next_frame < len(frames) and frames[next_frame] + 80_000_000 <= m.stamp_ns:
                fusion.estimate_at(frames[next_frame])
                next_frame += 1
        return len(live)

    replays = PlanarFusionFilter()
    replayed = sum(replays.add(m).replayed for m in live)
    print(
        f"synthetic drive: {args.duration:.0f} s, {len(in_order)} measurements "
        f"({', '.join(f'{k} {len(v)}' for k, v in streams.items())}); "
        f"live arrival re-applies {replayed} measurements ({replayed / len(live):.2f} per update)"
    )
    print("timings on a shared machine are noisy; medians of", args.repeats, "repeats")
    baseline, n = _timed(feed(in_order), args.repeats)
    rows = [("in order (baseline)", baseline, n)]
    rows.append(("live arrival", *_timed(feed(live), args.repeats)))
    rows.append(("live + output per frame", *_timed(feed_with_outputs, args.repeats)))
    measurements_per_s = len(in_order) / args.duration
    print(f"{'feed':<26}{'updates/s':>12}{'us/update':>12}{'vs baseline':>13}{'core at 20 Hz':>15}")
    for name, seconds, count in rows:
        rate = count / seconds
        print(
            f"{name:<26}{rate:>12.0f}{1e6 / rate:>12.1f}{seconds / baseline:>12.2f}x"
            f"{measurements_per_s / rate:>14.1%}"
        )

    run = fuse_offline(in_order, drive.stamps_ns)
    index = {int(s): i for i, s in enumerate(drive.stamps_ns)}
    rows_idx = [index[e.stamp_ns] for e in run.estimates]
    est = np.array([e.position[:2] for e in run.estimates])
    err = np.hypot(est[:, 0] - drive.x[rows_idx], est[:, 1] - drive.y[rows_idx])
    print(
        f"fused accuracy: {len(run.estimates)}/{len(drive)} frames, median {np.median(err):.3f} m, "
        f"{np.mean(err < 1.0):.2%} within 1 m, max {err.max():.2f} m"
    )


if __name__ == "__main__":
    main()
