"""Benchmark: per-stage cost of the BoVW query path on 640x480 frames, and what each setting keeps.

On the UKBench subset (56 real 640x480 photos), for several FeatureConfig settings: median time
per frame of SIFT (detect + describe), MSER (detect + affine patches + describe) and quantisation
against the 5000 + 2000-word vocabularies (flat and IVF quantisers), all on ONE core
(cv2.setNumThreads(1), faiss.omp_set_num_threads(1)); feature counts; and the UKBench score when
these settings describe the queries while the map (index) is described with the default (map)
settings, which is the on-board situation. The default (map) setting is the baseline for the
time ratios.

    .venv/bin/python bench/bench_features.py [--images DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import faiss
import numpy as np
from ukbench import find_ukbench_images, train_vocabularies, ukbench_score

from geoloc_ros.bovw.features import FeatureConfig, FeatureExtractor, FeatureKind, FeatureSet
from geoloc_ros.bovw.index import TfIdfIndex

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "ukbench-subset"

SETTINGS: dict[str, FeatureConfig] = {
    "map (default)": FeatureConfig(),
    "scale 0.75": FeatureConfig(sift_scale=0.75, sift_max_features=1000, mser_max_features=300),
    "fast (scale 0.5)": FeatureConfig.fast(),
    "fast, 2 layers": FeatureConfig.fast(sift_octave_layers=2),
    "fast, SIFT only": FeatureConfig.fast(mser_max_features=0),
}


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - start) * 1e3


def extract_timed(extractor: FeatureExtractor, image: np.ndarray, repeats: int) -> tuple[FeatureSet, dict]:
    """Features and the fastest time (ms) of each stage: grey conversion, then every kind (0: disabled)."""
    times: dict[str, list[float]] = {"grey": [], "sift": [], "mser": []}
    for _ in range(repeats):
        grey, t_grey = timed(cv2.cvtColor, image, cv2.COLOR_BGR2GRAY)
        times["grey"].append(t_grey)
        parts = []
        for name in ("sift", "mser"):
            if name in extractor.kinds:
                part, elapsed = timed(extractor.extract_kind, name, grey)
                parts.append(part)
            else:
                elapsed = 0.0
            times[name].append(elapsed)
    return FeatureSet.concatenate(parts), {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--repeats", type=int, default=3, help="runs per image (the fastest counts)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    dataset = find_ukbench_images(args.images)
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in dataset.paths]
    print(f"{len(images)} images {images[0].shape[1]}x{images[0].shape[0]}, one core, best of {args.repeats}")

    features: dict[str, list[FeatureSet]] = {}
    stage_ms: dict[str, dict[str, float]] = {}
    for name, config in SETTINGS.items():
        extractor = FeatureExtractor(config)
        per_image = [extract_timed(extractor, image, args.repeats) for image in images]
        features[name] = [f for f, _ in per_image]
        stage_ms[name] = {k: statistics.median(t[k] for _, t in per_image) for k in ("grey", "sift", "mser")}

    map_features = features["map (default)"]
    vocabularies = train_vocabularies(map_features, {"sift": 5000, "mser": 2000}, seed=0, n_iter=10)
    ivf = vocabularies.with_quantizer("ivf")
    map_words = [vocabularies.words(f) for f in map_features]
    index = TfIdfIndex.build(vocabularies.bag_sizes, map_words)

    header = (
        f"{'setting':18s} {'SIFT/img':>8s} {'MSER/img':>8s} {'SIFT ms':>8s} {'MSER ms':>8s} "
        f"{'q flat':>7s} {'q ivf':>6s} {'total':>6s} {'x map':>6s} {'UKB flat':>8s} {'UKB ivf':>8s}"
    )
    print(header)
    baseline_total = None
    for name, feats in features.items():
        quantize_flat = statistics.median(timed(vocabularies.words, f)[1] for f in feats)
        quantize_ivf = statistics.median(timed(ivf.words, f)[1] for f in feats)
        weights = {"sift": 0.7, "mser": 0.3} if SETTINGS[name].mser_max_features else {"sift": 1.0}
        scores = []
        for vocab in (vocabularies, ivf):
            ranked = np.stack([index.query(vocab.words(f), top_k=4, weights=weights).view_ids for f in feats])
            scores.append(ukbench_score(ranked, dataset.groups))
        ms = stage_ms[name]
        total = ms["grey"] + ms["sift"] + ms["mser"] + quantize_ivf
        baseline_total = baseline_total or total
        n_sift = np.mean([np.sum(f.kind == FeatureKind.SIFT) for f in feats])
        n_mser = np.mean([np.sum(f.kind == FeatureKind.MSER) for f in feats])
        print(
            f"{name:18s} {n_sift:8.0f} {n_mser:8.0f} {ms['sift']:8.1f} {ms['mser']:8.1f} "
            f"{quantize_flat:7.1f} {quantize_ivf:6.1f} {total:6.1f} {total / baseline_total:6.2f} "
            f"{scores[0]:8.3f} {scores[1]:8.3f}"
        )
    print("times: median over images of the best of the repeats, ms per 640x480 frame; 'total' uses the IVF")
    print(
        "quantiser; UKB: UKBench score, queries with the setting against a map index built with the default"
    )


if __name__ == "__main__":
    main()
