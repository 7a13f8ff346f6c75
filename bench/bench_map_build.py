"""Benchmark: map build throughput, bundle size and peak memory (issue 4's BENCHMARKS.md figures).

Builds the map bundle of a simulated data set (``geoloc sim``) with the default build settings,
the views in the drive camera's model, and prints:

* throughput: panoramas per minute, and per minute per core (worker processes), from the wall
  time; and panoramas per CPU-minute of the whole process tree (what a shared machine cannot
  inflate), with the load average before and after;
* bundle size per view (bytes), and what it is made of;
* peak memory: resident set size of the whole process tree (this process, the Dask scheduler
  and workers), sampled every 0.2 s with psutil;
* wall time per stage, and CPU seconds per step inside the workers;
* with ``--compare-vocabulary N``: training time of the two-level vocabularies against faiss's
  flat k-means (the seed's 5000 words) on the same N SIFT descriptors of the built map.

    .venv/bin/python bench/bench_map_build.py --sim out/standard --out out/bench_map [--workers 2]
    .venv/bin/python bench/bench_map_build.py --sim out/tiny --out out/bench_map_tiny
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from renamed_options import parse_args

from geoloc_ros.bovw.features import FeatureKind
from geoloc_ros.bovw.vocabulary import Vocabulary, VocabularyConfig
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.mapping.build import build_map, load_build_config
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.vocabulary_training import train_two_level


class TreeUsage:
    """Peak summed RSS and total CPU seconds of this process and all its descendants (Dask
    scheduler, workers, nannies: also ones started as separate commands by this process), sampled
    in a thread. A process's CPU time is its last sample (user + system, its own threads); a
    process that lives shorter than one interval is missed. The sampling thread's own CPU time is
    left out (at 0.2 s it was 53 s of a 74-minute build on a busy machine)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._cpu_by_pid: dict[tuple[int, float], float] = {}
        self._command_by_pid: dict[tuple[int, float], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start_cpu = 0.0
        self._sampler_cpu = 0.0
        self._own_start_cpu = 0.0

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of the tree since :meth:`__enter__`, without the sampling thread's."""
        return sum(self._cpu_by_pid.values()) - self._start_cpu - self._sampler_cpu

    def cpu_seconds_by(self, role: Callable[[str], str]) -> dict[str, float]:
        """CPU seconds per ``role(command line)`` of the descendants, and "this process" (without
        the sampling thread); descendants that existed at :meth:`__enter__` count whole."""
        own = (os.getpid(), psutil.Process().create_time())
        seconds = {"this process": self._cpu_by_pid.get(own, 0.0) - self._own_start_cpu - self._sampler_cpu}
        for key, cpu in self._cpu_by_pid.items():
            if key != own:
                name = role(self._command_by_pid[key])
                seconds[name] = seconds.get(name, 0.0) + cpu
        return seconds

    def _sample(self) -> None:
        root = psutil.Process(os.getpid())
        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                with process.oneshot():
                    total += process.memory_info().rss
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    if key not in self._command_by_pid:
                        self._command_by_pid[key] = " ".join(process.cmdline())
            except psutil.Error:
                continue  # a worker that just exited
            self._cpu_by_pid[key] = times.user + times.system
        self.peak_bytes = max(self.peak_bytes, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)
        self._sampler_cpu = time.thread_time()

    def __enter__(self) -> TreeUsage:
        self._sample()
        self._start_cpu = sum(self._cpu_by_pid.values())
        self._own_start_cpu = self._cpu_by_pid.get((os.getpid(), psutil.Process().create_time()), 0.0)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def compare_vocabulary_training(bundle: MapBundle, n_descriptors: int) -> None:
    """Two-level against flat k-means on the same SIFT descriptors (20 iterations each)."""
    kinds = np.asarray(bundle.bundle.array("features/kind"))
    rows = np.flatnonzero(kinds == FeatureKind.SIFT)
    rows = np.sort(np.random.default_rng(0).choice(rows, size=min(n_descriptors, len(rows)), replace=False))
    descriptors = np.asarray(bundle.bundle.array("features/descriptors")[rows])
    print(f"vocabulary training on {len(descriptors)} SIFT descriptors (20 k-means iterations):")
    start = time.perf_counter()
    Vocabulary.train(descriptors, VocabularyConfig(n_words=5000, sample_size=len(descriptors)))
    flat = time.perf_counter() - start
    print(f"  flat k-means, 5000 words: {flat:.1f} s (baseline)")
    for n_words in (5000, 30000):
        start = time.perf_counter()
        train_two_level(descriptors, VocabularyConfig(n_words=n_words, sample_size=len(descriptors)))
        seconds = time.perf_counter() - start
        print(
            f"  two-level, {n_words} words: {seconds:.1f} s ({flat / seconds:.1f}x faster than the baseline)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", type=Path, default=Path("out/standard"), help="data set of geoloc sim")
    parser.add_argument("--out", type=Path, default=Path("out/bench_map"), help="bundle to write (replaced)")
    parser.add_argument("--config", type=Path, help="build config YAML (default: the benchmark defaults)")
    parser.add_argument("--workers", type=int, help="worker processes (default: every core)")
    parser.add_argument("--json-out", type=Path, help="also write the figures here")
    parser.add_argument(
        "--compare-vocabulary", type=int, metavar="N", help="also time vocabulary training on N descriptors"
    )
    args = parse_args(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    config = load_build_config(args.config) if args.config else None
    camera = PinholeCamera.load(args.sim / "drive" / "camera.yaml")
    load_before = os.getloadavg()
    with TreeUsage() as usage:
        start = time.perf_counter()
        summary = build_map(
            args.sim / "panoramas", args.out, config, camera=camera, workers=args.workers, overwrite=True
        )
        wall = time.perf_counter() - start
    bundle = MapBundle.open(args.out, verify="none")

    load_after = os.getloadavg()
    per_minute = summary.n_panoramas / (wall / 60.0)
    per_cpu_minute = summary.n_panoramas / (usage.cpu_seconds / 60.0)
    per_core = per_minute / summary.workers
    stage_total = sum(summary.timings_s.values())
    panorama_stage_per_minute = summary.n_panoramas / (summary.timings_s.get("panoramas", wall) / 60.0)
    print(
        f"{args.sim}: {summary.n_panoramas} panoramas, {summary.n_views} views, {summary.n_features} features"
    )
    print(f"build wall time {wall:.1f} s on {summary.runner} ({summary.workers} workers)")
    print(f"throughput: {per_minute:.2f} panoramas/min, {per_core:.2f} panoramas/min/core (wall)")
    print(
        f"CPU time of the process tree {usage.cpu_seconds:.1f} s: "
        f"{per_cpu_minute:.2f} panoramas per CPU-minute "
        f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)"
    )
    print(
        f"  per-panorama stage alone: {panorama_stage_per_minute:.2f} panoramas/min "
        f"({panorama_stage_per_minute / summary.workers:.2f} per core)"
    )
    print("time per stage (s, wall):")
    for stage, seconds in summary.timings_s.items():
        print(f"  {stage:>12}: {seconds:8.1f}  ({100 * seconds / stage_total:4.1f} %)")
    print("worker CPU time per step (s, summed over panoramas):")
    for step, seconds in summary.worker_seconds.items():
        print(f"  {step:>12}: {seconds:8.1f}  ({seconds / summary.processed_panoramas:.2f} s per panorama)")
    members: dict[str, int] = {}
    for name, entry in bundle.manifest["files"].items():
        group = name.split("/")[0] if "/" in name else name
        members[group] = members.get(group, 0) + int(entry["bytes"])
    print(
        f"bundle: {summary.bundle_bytes / 1e6:.1f} MB, {summary.bytes_per_view:.0f} bytes per view "
        f"({summary.n_features / summary.n_views:.0f} features per view)"
    )
    for group, size in sorted(members.items(), key=lambda item: -item[1]):
        print(f"  {group:>13}: {size / 1e6:8.1f} MB  ({size / summary.n_views:9.0f} bytes per view)")
    print(f"peak memory (RSS of the process tree): {usage.peak_bytes / 1e6:.0f} MB")
    if args.compare_vocabulary:
        compare_vocabulary_training(bundle, args.compare_vocabulary)
    if args.json_out:
        figures = {
            "panoramas": summary.n_panoramas,
            "views": summary.n_views,
            "workers": summary.workers,
            "wall_s": wall,
            "panoramas_per_minute_per_core": per_core,
            "bytes_per_view": summary.bytes_per_view,
            "peak_rss_bytes": usage.peak_bytes,
            "cpu_s": usage.cpu_seconds,
            "panoramas_per_cpu_minute": per_cpu_minute,
            "load_before": load_before,
            "load_after": load_after,
            "timings_s": summary.timings_s,
            "worker_seconds": summary.worker_seconds,
        }
        args.json_out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
