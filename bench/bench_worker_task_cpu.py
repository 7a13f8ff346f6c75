"""Benchmark: what one panorama of the map build costs inside a Dask worker against in process.

Runs the build's per-panorama task (``process_panorama``) on the first ``--panoramas`` panoramas of
a simulated data set: in this process, then on a real ``dask worker`` (``dask_cluster``: started as
its own command, so with Dask's nanny environment), once submitted bare (as the build did before
issue 17's fix) and once through :func:`~geoloc_ros.mapping.runner.run_build_task` (as the build
submits it now). Prints per mode the mean per panorama of the task thread's CPU time (user +
system), the worker process's CPU time (all its threads), minor page faults, the views' and
features' CPU time, and the thread pools the task saw (threadpoolctl, OpenCV) with the worker's
``MALLOC_TRIM_THRESHOLD_``.

    .venv/bin/python bench/bench_worker_task_cpu.py --sim out/standard --panoramas 4 \\
        --config config/map_build_fast.yaml --scratch out/bench_worker_task
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from dask_cluster import loopback_cluster
from distributed import Client
from threadpoolctl import threadpool_info

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.panorama_set import PanoramaSet
from geoloc_ros.gis.virtual import street_axes
from geoloc_ros.mapping.build import _task, load_build_config
from geoloc_ros.mapping.config import MapBuildConfig
from geoloc_ros.mapping.extract import PanoramaTask, process_panorama
from geoloc_ros.mapping.runner import run_build_task


def measured(task: PanoramaTask) -> dict[str, Any]:
    """``process_panorama(task)`` with the CPU time and page faults of the thread that runs it."""
    before = resource.getrusage(resource.RUSAGE_THREAD)
    process_start = time.process_time()
    result = process_panorama(task)
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return {
        "thread_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "system_s": after.ru_stime - before.ru_stime,
        "process_cpu_s": time.process_time() - process_start,
        "page_faults": after.ru_minflt - before.ru_minflt,
        "views_s": result.timings_s["views"],
        "features_s": result.timings_s["features"],
        "pools": sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()}),
        "opencv_threads": cv2.getNumThreads(),
        "malloc_trim_threshold": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }


def panorama_tasks(sim: Path, config: MapBuildConfig, count: int) -> list[PanoramaTask]:
    camera = PinholeCamera.load(sim / "drive" / "camera.yaml").undistorted()
    pano_set = PanoramaSet.load(sim / "panoramas")
    positions = pano_set.positions_enu(pano_set.origin)
    axes = street_axes(pano_set, positions, config.views.neighbour_radius_m)
    records = list(pano_set.records)[:count]
    return [_task(pano_set.root, r, positions[i], axes[r.id], camera, config) for i, r in enumerate(records)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", type=Path, default=Path("out/standard"), help="data set of geoloc sim")
    parser.add_argument("--panoramas", type=int, default=4)
    parser.add_argument("--config", type=Path, help="build config YAML (default: the defaults)")
    parser.add_argument("--scratch", type=Path, default=Path("out/bench_worker_task"))
    args = parser.parse_args()
    config = load_build_config(args.config) if args.config else MapBuildConfig()
    tasks = panorama_tasks(args.sim, config, args.panoramas)
    load_before = os.getloadavg()[0]
    results = {"in process": [measured(t) for t in tasks]}
    with loopback_cluster(1, args.scratch) as address, Client(address) as client:
        bare = [client.submit(measured, t, pure=False).result() for t in tasks]
        results["Dask worker, bare task"] = bare
        fixed = [client.submit(run_build_task, measured, t, pure=False).result() for t in tasks]
        results["Dask worker, run_build_task"] = fixed
    print(
        f"{args.panoramas} panoramas of {args.sim}, means per panorama "
        f"(load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after):"
    )
    print(
        "| where | task thread CPU s (system) | worker process CPU s | page faults | views + features CPU s |"
    )
    print("| --- | --- | --- | --- | --- |")
    for mode, rows in results.items():

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(np.mean([r[key] for r in rows]))

        print(
            f"| {mode} | {mean('thread_cpu_s'):.2f} ({mean('system_s'):.2f}) | {mean('process_cpu_s'):.2f} | "
            f"{mean('page_faults'):,.0f} | {mean('views_s'):.2f} + {mean('features_s'):.2f} |"
        )
    for mode, rows in results.items():
        print(
            f"{mode}: pools {rows[-1]['pools']}, OpenCV {rows[-1]['opencv_threads']} threads, "
            f"MALLOC_TRIM_THRESHOLD_={rows[-1]['malloc_trim_threshold']}"
        )


if __name__ == "__main__":
    main()
