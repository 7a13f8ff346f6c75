"""Benchmark: CPU seconds of the map build's per-panorama work and of vocabulary training, one thread.

Runs :func:`geoloc_ros.mapping.extract.process_panorama` (load, rectified + virtual views,
features, 3D points, JPEGs: what a Dask worker does per panorama) in this process on the first
``--panoramas`` panoramas of a data set, after one warm-up, and prints the CPU seconds
(``time.process_time``) per panorama: median and total, and the median per step. With
``--vocabulary-from BUNDLE``, also the CPU seconds of training the SIFT and MSER vocabularies
(two-level k-means, the build's settings) on the first ``--descriptors`` descriptors of each bag
of that bundle.

CPU time, not wall time: on a shared machine it is what other users do not inflate. For a
before/after on the same machine, run the same script against the other checkout's code:

    .venv/bin/python bench/bench_panorama_cpu.py --sim out/standard --panoramas 4 \\
        --vocabulary-from out/maps/standard
    PYTHONPATH=/path/to/main/checkout .venv/bin/python bench/bench_panorama_cpu.py ...
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import cv2
import faiss
import numpy as np

import geoloc_ros
from geoloc_ros.bovw.kinds import feature_kind
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.panorama_set import PanoramaSet
from geoloc_ros.gis.virtual import street_axes
from geoloc_ros.mapping.build import load_build_config
from geoloc_ros.mapping.config import MapBuildConfig
from geoloc_ros.mapping.extract import PanoramaTask, process_panorama
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.vocabulary_training import train_two_level


def panorama_cpu(sim: Path, config: MapBuildConfig, count: int) -> None:
    pano_set = PanoramaSet.load(sim / "panoramas")
    camera = PinholeCamera.load(sim / "drive" / "camera.yaml").undistorted()
    positions = pano_set.positions_enu(pano_set.origin)
    axes = street_axes(pano_set, positions, config.views.neighbour_radius_m)
    tasks = [
        PanoramaTask(
            pano_set_root=str(pano_set.root.resolve()),
            record=record,
            position_enu=tuple(float(v) for v in positions[i]),  # type: ignore[arg-type]
            axis=axes[record.id],
            camera=camera,
            views=config.views,
            features=config.features,
            points=config.points,
            images=config.images,
        )
        for i, record in enumerate(pano_set.records[:count])
    ]
    process_panorama(tasks[0])  # warm-up: sampling maps and ray caches, as in a long build
    seconds, steps, views, features = [], [], 0, 0
    for task in tasks:
        start = time.process_time()
        result = process_panorama(task)
        seconds.append(time.process_time() - start)
        steps.append(result.timings_s)
        views += result.n_views
        features += result.n_features
    print(
        f"{len(tasks)} panoramas, {views} views, {features / max(views, 1):.0f} features per view: "
        f"CPU {statistics.median(seconds):.2f} s per panorama (median), {sum(seconds):.1f} s in all"
    )
    for step in steps[0]:
        print(
            f"  {step:>9}: {statistics.median(s[step] for s in steps):.2f} s (median, as the step reports it)"
        )


def vocabulary_cpu(bundle_dir: Path, config: MapBuildConfig, count: int) -> None:
    bundle = MapBundle.open(bundle_dir, verify="none")
    kinds = np.asarray(bundle.bundle.array("features/kind"))
    descriptors = bundle.bundle.array("features/descriptors")
    for name, vocabulary_config in config.vocabulary.by_bag(config.bag_names()).items():
        rows = np.flatnonzero(kinds == feature_kind(name).code)[:count]
        sample = np.asarray(descriptors[rows])
        words = min(vocabulary_config.n_words, len(sample) // config.vocabulary.min_descriptors_per_word)
        start = time.process_time()
        train_two_level(sample, vocabulary_config.model_copy(update={"n_words": words}))
        seconds = time.process_time() - start
        print(f"vocabulary {name}: {words} words on {len(sample)} descriptors, CPU {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", type=Path, default=Path("out/standard"), help="data set of geoloc sim")
    parser.add_argument("--panoramas", type=int, default=4)
    parser.add_argument("--config", type=Path, help="build config YAML (default: the defaults)")
    parser.add_argument(
        "--vocabulary-from", type=Path, help="time vocabulary training on this bundle's features"
    )
    parser.add_argument("--descriptors", type=int, default=300_000, help="descriptors per bag to train on")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    print(f"code: {Path(geoloc_ros.__file__).parent}")
    config = load_build_config(args.config) if args.config else MapBuildConfig()
    if args.panoramas > 0:
        panorama_cpu(args.sim, config, args.panoramas)
    if args.vocabulary_from:
        vocabulary_cpu(args.vocabulary_from, config, args.descriptors)


if __name__ == "__main__":
    main()
