"""Benchmark: how the map build scales with Dask workers (issue 17's scaling table).

For each worker count, starts a real cluster: ``dask scheduler`` and N ``dask worker`` processes
(single-threaded, separate commands, all on 127.0.0.1: :mod:`dask_cluster`), builds the map of
the first ``--panoramas`` panoramas of a simulated data set through it (``build_map(...,
scheduler=...)``), stops it. With ``--in-process`` the first row is the same build in this
process (no Dask), the baseline of the others. Per row:

* wall time of the whole build and of its per-panorama stage (views, features, JPEGs: the part
  that runs on the workers; quantisation runs there too), that stage's throughput (panoramas per
  minute) and wall efficiency against the first row (``T1 * W1 / (N * TN)``);
* CPU seconds of the whole process tree (client, scheduler, nannies, workers), CPU efficiency
  against the first row (its CPU over this row's: 100 % when the workers add no CPU), and the
  workers' CPU per panorama for views and features (process time inside the task);
* the load average (1 min) before and after.

Wall efficiency needs idle cores; CPU efficiency does not (a busy machine barely moves it). The
table ends with the command that made it; the rows are ready to paste into BENCHMARKS.md.
With ``--vocabulary-from BUNDLE`` the vocabularies are reused (no training in the client): the
table is then about the distributed stages alone.

    .venv/bin/python bench/bench_dask_scaling.py --sim out/standard --panoramas 8 --in-process \\
        --workers 1 2 --vocabulary-from out/maps/standard --scratch out/bench_scaling
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench_map_build import TreeUsage
from dask_cluster import loopback_cluster
from renamed_options import parse_args

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.panorama_set import INDEX_NAME, ORIGIN_NAME
from geoloc_ros.mapping.build import build_map, load_build_config
from geoloc_ros.mapping.config import MapBuildConfig


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
    parser.add_argument("--in-process", action="store_true", help="first row: the build in this process")
    parser.add_argument("--config", type=Path, help="build config YAML (default: the defaults)")
    parser.add_argument("--vocabulary-from", type=Path, help="reuse this bundle's vocabularies")
    parser.add_argument("--scratch", type=Path, default=Path("out/bench_scaling"))
    parser.add_argument("--json-out", type=Path, help="also write the table here")
    args = parse_args(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    config = load_build_config(args.config) if args.config else None
    camera = PinholeCamera.load(args.sim / "drive" / "camera.yaml")
    panoramas = first_panoramas(args.sim / "panoramas", args.scratch / "panoramas", args.panoramas)
    runs: list[int | None] = [None, *args.workers] if args.in_process else list(args.workers)
    rows = [
        measure(args, n_workers, panoramas, config, camera)
        for n_workers in runs  # None: in this process
    ]
    first = rows[0]
    print(
        f"\n{args.panoramas} panoramas of {args.sim}, {os.cpu_count()} cores, vocabularies "
        f"{'reused' if args.vocabulary_from else 'trained'}; efficiencies against the first row:"
    )
    print(
        "| workers | build wall s | per-panorama stage wall s | panoramas/min (stage) | wall efficiency "
        "| tree CPU s | CPU efficiency | worker CPU per panorama (views + features) | load before / after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        row["wall_efficiency"] = first["stage_s"] * first["workers"] / (row["workers"] * row["stage_s"])
        row["cpu_efficiency"] = first["cpu_s"] / row["cpu_s"]
        label = "1 (in process)" if row["in_process"] else f"{row['workers']} (Dask cluster)"
        print(
            f"| {label} | {row['wall_s']:.1f} | {row['stage_s']:.1f} | "
            f"{60.0 * args.panoramas / row['stage_s']:.1f} | {100 * row['wall_efficiency']:.0f} % | "
            f"{row['cpu_s']:.1f} | {100 * row['cpu_efficiency']:.0f} % | "
            f"{row['views_s']:.2f} + {row['features_s']:.2f} s | "
            f"{row['load_before']:.1f} / {row['load_after']:.1f} |"
        )
    print(f"\n(`{shlex.join(['bench/bench_dask_scaling.py', *sys.argv[1:]])}`)")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


def dask_role(command: str) -> str:
    """What a process of the loopback cluster is, from its command line: the ``dask worker``
    command is the nanny; the worker is the process it spawns."""
    if "dask scheduler" in command:
        return "scheduler"
    if "dask worker" in command:
        return "nannies"
    return "workers"


def measure(
    args: argparse.Namespace,
    n_workers: int | None,
    panoramas: Path,
    config: MapBuildConfig | None,
    camera: PinholeCamera,
) -> dict[str, Any]:
    """Build the map on ``n_workers`` workers of a fresh loopback cluster (None: in this process)."""
    name = "in_process" if n_workers is None else str(n_workers)
    out = args.scratch / f"map_{name}"
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        usage = stack.enter_context(TreeUsage())
        address = None
        if n_workers is not None:
            address = stack.enter_context(loopback_cluster(n_workers, args.scratch / f"cluster_{name}"))
        start = time.perf_counter()
        summary = build_map(
            panoramas,
            out,
            config,
            camera=camera,
            scheduler=address,
            workers=1 if n_workers is None else None,
            overwrite=True,
            vocabulary_from=args.vocabulary_from,
        )
        wall = time.perf_counter() - start
    shutil.rmtree(out)
    row = {
        "workers": summary.workers,
        "in_process": n_workers is None,
        "wall_s": wall,
        "stage_s": summary.timings_s["panoramas"],
        "cpu_s": usage.cpu_seconds,
        "views_s": summary.worker_seconds["views"] / summary.processed_panoramas,
        "features_s": summary.worker_seconds["features"] / summary.processed_panoramas,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    row["cpu_s_by_process"] = usage.cpu_seconds_by(dask_role)
    task_cpu = sum(summary.worker_seconds.values())
    row["task_cpu_s"] = task_cpu
    print(
        f"{summary.runner}: {wall:.1f} s wall, {usage.cpu_seconds:.1f} s CPU "
        f"({', '.join(f'{k} {v:.1f}' for k, v in row['cpu_s_by_process'].items())}; "
        f"per-panorama tasks {task_cpu:.1f})",
        flush=True,
    )
    return row


if __name__ == "__main__":
    main()
