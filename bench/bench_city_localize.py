"""Benchmark: the real localizer on a real drive against a city-scale bundle (memory, latency, accuracy).

The bundle is bench/city_bundle.py's: a synthetic city of a million views around a real map (the
compacted ``standard`` map at its true position), index and features paged by tile.

**Drive pass** (``--bag``), in a fresh process (its peak RSS is its own): the localizer the
``bovw_localizer`` node runs (:class:`~geoloc_ros.localize.localizer.Localizer`, the config of
``--config`` with ``retrieval.paged_tiles``), node-style (one frame at a time on one thread:
rectify, features, localize), each frame with the position prior the node takes from its
NavSatFix topic: the bag's consumer GPS fix (5 Hz, about 4 m), the newest not older than
``--gps-max-age-s``. Reported:
the process's peak RSS (``VmHWM``; before the map was opened, after the localizer was set up, at the
end), per-frame latency (wall, the frame thread's CPU time, the process's CPU time with the prefetch
thread), accuracy against RTK, the paged index's and the feature columns' read counters, the
prefetches. Then, **in the same process on the same frames and priors**, the plain map
(``--map``, the whole index memory-mapped, as today): its accuracy and latency beside the city's.

**Feature pass** (``--feature-drive-km``): what the per-view feature reads cost in memory on a drive
through the synthetic part of the city, where the real drive cannot go. A vehicle drives the city's
streets at 14 m/s; every second the views within ``tracking.search_radius_m`` are sampled for
co-visibility and the five nearest are read whole into the matching cache, through the localizer's
own classes (``CovisibilityModel``, ``ViewCache``), in two fresh processes: features read by
positioned reads (this code), and features sliced from memory-mapped columns (the code before).
Their peak RSS shows which stays bounded. A third process (``localizer``) does the same through a
whole :class:`~geoloc_ros.localize.localizer.Localizer` on the city bundle (its co-visibility
model and matching cache), plus, every step, a retrieval query around the position from its
tile-paged index and a prefetch request along the direction of travel: the peak RSS of everything
the localizer holds on a drive across the city. The synthetic views' features are the zeros of a
sparse file: what is measured is the memory the reads leave behind, not matching.

    nice -n 10 .venv/bin/python bench/bench_city_localize.py --city /work/data/city/city1m_standard \\
        --map /work/data/bundle-scale/maps/standard_pq64 --bag /work/data/standard/drive \\
        --json-out /work/data/city/city_localize.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from renamed_options import parse_args

MB = 1024.0 * 1024.0


def proc_status() -> dict[str, float]:
    """VmRSS / VmHWM (peak) / RssFile of this process, MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssFile", "RssAnon"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {"median": round(float(p50), 2), "p95": round(float(p95), 2)}


def localize_pass(
    bundle: Any, drive: Any, config: Any, priors: list[Any], max_frames: int | None
) -> dict[str, Any]:
    from geoloc_ros.evaluation import evaluate_sources
    from geoloc_ros.evaluation.groundtruth import drive_ground_truth
    from geoloc_ros.geometry.sources import SOURCE_BOVW
    from geoloc_ros.localize.localizer import Localizer

    setup_start = time.perf_counter()
    localizer = Localizer(bundle, config, drive.mounting, drive.camera)
    setup_s = time.perf_counter() - setup_start
    rss_setup = proc_status()
    wall, thread_cpu, process_cpu, estimates, stamps = [], [], [], [], []
    modes: dict[str, int] = {}
    rss_trace = []
    for k, frame in enumerate(drive.frames(max_frames=max_frames)):
        stamps.append(frame.stamp_ns)
        start, start_thread, start_process = time.perf_counter(), time.thread_time(), time.process_time()
        result = localizer.localize(frame.image, frame.stamp_ns, priors[k])
        wall.append((time.perf_counter() - start) * 1e3)
        thread_cpu.append((time.thread_time() - start_thread) * 1e3)
        process_cpu.append((time.process_time() - start_process) * 1e3)
        if result.estimate is not None:
            estimates.append(result.estimate)
            modes[result.mode] = modes.get(result.mode, 0) + 1
        if k % 100 == 0:
            rss_trace.append(round(proc_status()["VmRSS"], 1))
    if localizer.prefetcher is not None:
        localizer.prefetcher.wait_idle()
    truth = drive_ground_truth(drive, bundle.origin)
    metrics = (
        evaluate_sources({SOURCE_BOVW: estimates}, truth, frame_stamps_ns=np.asarray(stamps, np.int64))
        .sources[SOURCE_BOVW]
        .metrics
    )
    report: dict[str, Any] = {
        "views": bundle.n_views,
        "setup_s": round(setup_s, 2),
        "rss_after_setup_mb": round(rss_setup["VmRSS"], 1),
        "frames": len(stamps),
        "localized": len(estimates),
        "localized_by_mode": modes,
        "median_error_m": round(float(metrics.median_error_m), 4),
        "coverage_95": metrics.coverage_95,
        "heading_median_deg": metrics.heading_median_deg,
        "wall_ms": percentiles(wall),
        "frame_thread_cpu_ms": percentiles(thread_cpu),
        "process_cpu_ms": percentiles(process_cpu),
        "rss_trace_mb": rss_trace,
        "positions": {
            int(e.stamp_ns): [round(float(v), 4) for v in e.pose.translation[:2]] for e in estimates
        },
    }
    index = localizer.retriever.index
    if hasattr(index, "stats"):
        report["index_paging"] = {
            **index.stats.to_dict(),
            "resident_mb": round(index.resident_bytes / 1e6, 1),
        }
    report["feature_reads"] = bundle.feature_columns.stats.to_dict()
    if localizer.prefetcher is not None:
        p = localizer.prefetcher
        report["prefetch"] = {"requests": p.requests, "done": p.done, "errors": p.errors}
    localizer.close()
    return report


def drive_child(args: argparse.Namespace) -> dict[str, Any]:
    """The drive pass (see the module docstring), in a fresh process."""
    rss_start = proc_status()
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.localize.config import load_localizer_config
    from geoloc_ros.localize.localizer import PositionPrior
    from geoloc_ros.mapping.map import MapBundle

    rss_imports = proc_status()
    drive = DriveBag(args.bag)
    city = MapBundle.open(args.city, verify="sizes")
    base = load_localizer_config(args.config)
    city_config = base.model_copy(
        update={"retrieval": base.retrieval.model_copy(update={"paged_tiles": args.paged_tiles})}
    )
    # The same consumer-GPS priors for both passes: the bag's own GPS fixes, the newest one not
    # older than --gps-max-age-s at each frame (what the node does with its NavSatFix topic).
    stamps = drive.frame_stamps()
    if args.max_frames is not None:
        stamps = stamps[: args.max_frames]
    gps = drive.gps()
    if gps is None or len(gps) == 0:
        raise SystemExit(f"{args.bag}: no consumer GPS topic to take the position priors from")
    latest = np.searchsorted(gps.stamps_ns, stamps, side="right") - 1
    priors: list[PositionPrior | None] = []
    for stamp, k in zip(stamps, latest, strict=True):
        if k < 0 or stamp - gps.stamps_ns[k] > args.gps_max_age_s * 1e9:
            priors.append(None)
            continue
        priors.append(
            PositionPrior.from_geodetic(
                int(gps.stamps_ns[k]),
                float(gps.latitude_deg[k]),
                float(gps.longitude_deg[k]),
                float(gps.altitude_m[k]),
                gps.covariance[k].reshape(3, 3),
                city.origin,
            )
        )
    report: dict[str, Any] = {
        "load_at_start": os.getloadavg(),
        "rss_at_start_mb": round(rss_start["VmRSS"], 1),
        "rss_after_imports_mb": round(rss_imports["VmRSS"], 1),
    }
    report["city"] = localize_pass(city, drive, city_config, priors, args.max_frames)
    status = proc_status()
    report["city"]["peak_rss_mb"] = round(status["VmHWM"], 1)
    report["city"]["rss_at_end_mb"] = round(status["VmRSS"], 1)
    report["city"]["bundle_bytes"] = city.bundle.total_bytes
    report["city"]["bundle_on_disk_bytes"] = sum(
        p.stat().st_blocks * 512 for p in Path(args.city).rglob("*") if p.is_file()
    )
    del city
    plain = MapBundle.open(args.map, verify="sizes")
    report["plain"] = localize_pass(plain, drive, base, priors, args.max_frames)
    report["plain"]["bundle_bytes"] = plain.bundle.total_bytes
    report["load_at_end"] = os.getloadavg()
    # Same frames, same priors: how far apart are the two maps' poses?
    a, b = report["city"].pop("positions"), report["plain"].pop("positions")
    both = sorted(set(a) & set(b))
    gaps = [float(np.hypot(*(np.subtract(a[s], b[s])))) for s in both]
    report["same_frames"] = {
        "localized_by_both": len(both),
        "only_city": len(set(a) - set(b)),
        "only_plain": len(set(b) - set(a)),
        "median_gap_m": round(float(np.median(gaps)), 4) if gaps else None,
        "max_gap_m": round(float(np.max(gaps)), 4) if gaps else None,
    }
    return report


def city_route(centre: np.ndarray, km: float, rng: np.random.Generator, half: float) -> np.ndarray:
    """Positions every second of a drive at 14 m/s along the city's 100 m street grid."""
    position = np.round(centre / 100.0) * 100.0
    heading = np.array([1.0, 0.0])
    out, travelled, next_turn = [], 0.0, 1500.0
    while travelled < km * 1000.0:
        position = position + heading * 14.0
        travelled += 14.0
        if travelled >= next_turn and np.all(np.abs(position - np.round(position / 100.0) * 100.0) < 7.0):
            position = np.round(position / 100.0) * 100.0
            heading = np.array([-heading[1], heading[0]]) * (1 if rng.random() < 0.5 else -1)
            ahead = position + heading * 1500.0
            if np.any(np.abs(ahead) > half):
                heading = -heading
            next_turn = travelled + rng.uniform(1000.0, 2000.0)
        out.append(position.copy())
    return np.array(out)


def feature_child(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """The feature pass (see the module docstring) with ``mode`` "pread", "mmap" or "localizer", in a
    fresh process."""
    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.geometry.pose import Pose3D
    from geoloc_ros.localize.candidates import CovisibilityModel
    from geoloc_ros.localize.config import LocalizerConfig
    from geoloc_ros.localize.matching import ViewCache
    from geoloc_ros.mapping.map import FEATURE_COLUMNS, MapBundle

    bundle = MapBundle.open(args.city, verify="sizes")
    if mode == "mmap":  # the code before: slices of memory-mapped columns

        def gather(name: str, slices: list[slice]) -> np.ndarray:
            stored = "descriptor_codes" if name == "descriptors" and bundle.descriptor_codec else name
            column = bundle.bundle.array(f"features/{stored}")
            part = np.concatenate([column[s] for s in slices]) if len(slices) > 1 else column[slices[0]]
            if stored == "descriptor_codes":
                assert bundle.descriptor_codec is not None
                return bundle.descriptor_codec.decode(np.asarray(part))
            dtype = np.dtype(FEATURE_COLUMNS[name][0])
            return part if part.dtype == dtype else part.astype(dtype)

        bundle._gather = gather  # type: ignore[method-assign]
    config = LocalizerConfig()
    camera: PinholeCamera = bundle.camera
    localizer = None
    if mode == "localizer":  # the whole localizer's state: paged index, prefetch thread, caches
        from geoloc_ros.localize.localizer import Localizer

        config = config.model_copy(
            update={"retrieval": config.retrieval.model_copy(update={"paged_tiles": args.paged_tiles})}
        )
        localizer = Localizer(bundle, config)
        assert localizer.covisibility is not None and localizer.prefetcher is not None
        covisibility, cache = localizer.covisibility, localizer.cache
    else:
        covisibility = CovisibilityModel(bundle, config.tracking.sample_points_per_view)
        cache = ViewCache(bundle, config.matching.cache_views)
    rng = np.random.default_rng(args.seed + 1)
    rss_setup = proc_status()
    half = float(
        np.percentile(np.abs(np.asarray(bundle.views.position[:: max(bundle.n_views // 1000, 1), :2])), 95)
    )
    start_xy = np.array([-0.6, -0.6]) * half
    route = city_route(start_xy, args.feature_drive_km, np.random.default_rng(args.seed), 0.9 * half)
    cpu, views_read = [], 0
    for k, xy in enumerate(route):
        start = time.thread_time()
        heading = route[min(k + 1, len(route) - 1)] - route[max(k - 1, 0)]
        yaw = float(np.arctan2(heading[0], heading[1]))
        forward = np.array([np.sin(yaw), np.cos(yaw), 0.0])
        right = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
        rotation = np.column_stack([right, [0.0, 0.0, -1.0], forward])
        predicted = Pose3D(rotation, np.array([xy[0], xy[1], 2.5]))
        nearby = bundle.views_near(xy, config.tracking.search_radius_m)
        covisibility.scores(predicted, camera, nearby)
        nearest = nearby[np.argsort(np.hypot(*(np.asarray(bundle.views.position[nearby, :2]) - xy).T))[:5]]
        for view in nearest:
            cache.get(int(view))
        if localizer is not None:
            # A re-localization query around the prior every step (words drawn at random: the
            # memory and the cost, not the answer, are measured), then the prefetch ahead.
            words = {"sift": rng.integers(0, 30000, 500), "mser": rng.integers(0, 8000, 180)}
            localizer.retriever.index.scores(words, None, bundle.views_near(xy, 55.0))
            assert localizer.prefetcher is not None
            localizer.prefetcher.request(xy, heading / np.linalg.norm(heading) * 14.0)
        views_read += len(nearby)
        cpu.append((time.thread_time() - start) * 1e3)
    extra: dict[str, Any] = {}
    if localizer is not None:
        assert localizer.prefetcher is not None
        localizer.prefetcher.wait_idle()
        index = localizer.retriever.index
        extra = {
            "index_paging": {**index.stats.to_dict(), "resident_mb": round(index.resident_bytes / 1e6, 1)},
            "prefetch": {"requests": localizer.prefetcher.requests, "done": localizer.prefetcher.done},
        }
    status = proc_status()
    return {
        **extra,
        "mode": mode,
        "km": args.feature_drive_km,
        "steps": len(route),
        "views_sampled": views_read,
        "rss_after_setup_mb": round(rss_setup["VmRSS"], 1),
        "peak_rss_mb": round(status["VmHWM"], 1),
        "rss_at_end_mb": round(status["VmRSS"], 1),
        "rss_file_mb": round(status.get("RssFile", 0.0), 1),
        "cpu_ms_per_step": percentiles(cpu),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", type=Path, required=True, help="bench/city_bundle.py's bundle")
    parser.add_argument("--map", type=Path, required=True, help="the plain real map (the city's inside)")
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="LocalizerConfig YAML (default: the defaults)")
    parser.add_argument("--paged-tiles", type=int, default=16)
    parser.add_argument("--gps-max-age-s", type=float, default=1.0, help="older GPS fixes are no prior")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-drive-km", type=float, default=10.0, help="0: no feature pass")
    parser.add_argument("--no-drive", action="store_true", help="only the feature pass")
    parser.add_argument(
        "--feature-modes",
        nargs="+",
        default=["pread", "mmap", "localizer"],
        choices=["pread", "mmap", "localizer"],
        help="feature passes: per-view reads, memory-mapped slices (the code before), the whole localizer",
    )
    parser.add_argument("--json-out", type=Path)
    args = parse_args(parser)
    context = multiprocessing.get_context("spawn")
    report: dict[str, Any] = {}
    if not args.no_drive:
        with context.Pool(1) as pool:
            report["drive"] = pool.apply(drive_child, (args,))
        print(json.dumps(report["drive"], indent=1, default=float), flush=True)
    if args.feature_drive_km > 0:
        report["features"] = {}
        for mode in args.feature_modes:
            with context.Pool(1) as pool:
                report["features"][mode] = pool.apply(feature_child, (args, mode))
            print(json.dumps(report["features"][mode], indent=1), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
