"""Benchmark: how the map build scales with Dask workers (issue 17's scaling table).

For each worker count, starts a real cluster: ``dask scheduler`` and N ``dask worker`` processes
(single-threaded, separate commands, all on 127.0.0.1: :mod:`dask_cluster`), builds the map of
the first ``--panoramas`` panoramas of a simulated data set through it (``build_map(...,
scheduler=...)``), stops it, and prints per worker count:

* wall time of the whole build and of its per-panorama stage (views, features, JPEGs: the part
  that runs on the workers; quantisation runs there too);
* throughput of that stage (panoramas per minute), speed-up and efficiency against 1 worker
  (``T1 / (N * TN)``);
* CPU seconds of the whole process tree (client, scheduler, nannies, workers) and the load average.

With ``--vocabulary-from BUNDLE`` the vocabularies are reused (no training in the client): the
table is then about the distributed stages alone. On a machine with fewer free cores than
workers, the efficiency measures the machine, not Dask: the printed load average says how busy it
was.

    .venv/bin/python bench/bench_dask_scaling.py --sim out/standard --panoramas 8 --workers 1 2 4 \\
        --vocabulary-from out/maps/standard --scratch out/bench_scaling
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

from bench_map_build import TreeUsage
from dask_cluster import loopback_cluster

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.panorama_set import INDEX_NAME, ORIGIN_NAME
from geoloc_ros.mapping.build import build_map, load_build_config


def first_panoramas(source: Path, target: Path, count: int) -> Path:
    """A panorama set with the first ``count`` panoramas of ``source`` (images shared by symlink)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    lines = [line for line in (source / INDEX_NAME).read_text().splitlines() if line.strip()][:count]
    (target / INDEX_NAME).write_text("\n".join(lines) + "\n")
    if (source / ORIGIN_NAME).is_file():
        shutil.copy(source / ORIGIN_NAME, target / ORIGIN_NAME)
    (target / "images").symlink_to((source / "images").resolve())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", type=Path, default=Path("out/standard"), help="data set of geoloc sim")
    parser.add_argument("--panoramas", type=int, default=8, help="build the first N panoramas")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--config", type=Path, help="build config YAML (default: the defaults)")
    parser.add_argument("--vocabulary-from", type=Path, help="reuse this bundle's vocabularies")
    parser.add_argument("--scratch", type=Path, default=Path("out/bench_scaling"))
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    config = load_build_config(args.config) if args.config else None
    camera = PinholeCamera.load(args.sim / "drive" / "camera.yaml")
    panoramas = first_panoramas(args.sim / "panoramas", args.scratch / "panoramas", args.panoramas)
    rows = []
    for n_workers in args.workers:
        out = args.scratch / f"map_{n_workers}"
        load_before = os.getloadavg()[0]
        with (
            TreeUsage() as usage,
            loopback_cluster(n_workers, args.scratch / f"cluster_{n_workers}") as address,
        ):
            start = time.perf_counter()
            summary = build_map(
                panoramas,
                out,
                config,
                camera=camera,
                scheduler=address,
                overwrite=True,
                vocabulary_from=args.vocabulary_from,
            )
            wall = time.perf_counter() - start
        rows.append(
            {
                "workers": n_workers,
                "wall_s": wall,
                "stage_s": summary.timings_s["panoramas"],
                "cpu_s": usage.cpu_seconds,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
            }
        )
        shutil.rmtree(out)
        print(f"{n_workers} workers: {wall:.1f} s", flush=True)

    base = rows[0]["stage_s"] * rows[0]["workers"]
    print(
        f"\n{args.panoramas} panoramas of {args.sim}, {os.cpu_count()} cores "
        f"(vocabularies {'reused' if args.vocabulary_from else 'trained'}):"
    )
    print(
        "| workers | build wall s | per-panorama stage wall s | panoramas/min | speed-up | efficiency "
        "| CPU s (tree) | load before / after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        speedup = base / row["stage_s"]
        row["efficiency"] = speedup / row["workers"]
        per_minute = args.panoramas / (row["stage_s"] / 60.0)
        print(
            f"| {row['workers']} | {row['wall_s']:.1f} | {row['stage_s']:.1f} | "
            f"{per_minute:.1f} | {speedup:.2f} | {100 * row['efficiency']:.0f} % | "
            f"{row['cpu_s']:.0f} | {row['load_before']:.1f} / {row['load_after']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
