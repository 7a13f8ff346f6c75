"""Benchmark of the simulator: generate a scenario once and print where the time goes.

    .venv/bin/python bench/bench_sim.py                      # standard, seed 1, all cores
    .venv/bin/python bench/bench_sim.py --scenario tiny --workers 1

Prints the total wall time, the median render time of one drive frame and of one panorama (inside
the worker processes, texture generation included), and the parallel speed-up: the summed render
time of all items divided by the wall time of the whole run (the baseline being one process doing
the same renders back to back). Timings depend on the machine's load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from geoloc_ros.sim.generate import generate
from geoloc_ros.sim.scenario import load_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="standard", help="preset name or scenario YAML")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the data set in this directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    scenario = load_scenario(args.scenario)
    with tempfile.TemporaryDirectory(prefix="bench_sim_") as tmp:
        out = args.keep if args.keep is not None else Path(tmp) / "out"
        start = time.perf_counter()
        keep = args.keep is not None
        summary = generate(scenario, out, seed=args.seed, workers=args.workers, overwrite=keep)
        wall = time.perf_counter() - start
    frames = np.asarray(summary.frame_seconds)
    panos = np.asarray(summary.panorama_seconds)
    busy = float(frames.sum() + panos.sum())
    pano_w = scenario.capture.panorama_width
    cam = scenario.drive.camera
    print(
        f"scenario {scenario.name}: {summary.panoramas} panoramas ({pano_w}x{pano_w // 2}), "
        f"{summary.frames} frames ({cam.width}x{cam.height}), route {summary.route_length_m:.0f} m"
    )
    print(f"total wall time            {wall:8.1f} s")
    print(f"median frame render        {np.median(frames):8.3f} s   (p90 {np.percentile(frames, 90):.3f} s)")
    print(f"median panorama render     {np.median(panos):8.3f} s   (p90 {np.percentile(panos, 90):.3f} s)")
    print(f"summed render time         {busy:8.1f} s")
    print(f"parallel speed-up          {busy / wall:8.2f} x   (summed render time / wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
