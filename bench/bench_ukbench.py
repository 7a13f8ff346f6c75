"""Benchmark: UKBench score of the BoVW retrieval on the UKBench subset (56 images, 14 objects).

The score is the mean number of same-object images among each query's top 4 (query included;
4.0 is perfect). Every image is a query against an index of all 56; vocabularies are trained on
the same images (see ukbench). Prints, for the default (map) features: SIFT only,
MSER only and the two bags combined with several weights, with raw and square-rooted term
frequencies, for the seed's vocabulary sizes (5000 SIFT / 2000 MSER words) and for a plain
"RootSIFT + 2000 words" baseline (its SIFT-only row), measured in the same process; then the
same for the on-board (fast) features.

    .venv/bin/python bench/bench_ukbench.py [--images DIR] [--iterations 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
from ukbench import (
    extract_all,
    find_ukbench_images,
    ranked_results,
    train_vocabularies,
    ukbench_score,
)

from geoloc_ros.bovw.features import FeatureConfig
from geoloc_ros.bovw.index import IndexConfig

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "ukbench-subset"

WEIGHTS = {
    "SIFT only": {"sift": 1.0},
    "MSER only": {"mser": 1.0},
    "0.7 SIFT + 0.3 MSER": {"sift": 0.7, "mser": 0.3},
    "0.5 SIFT + 0.5 MSER": {"sift": 0.5, "mser": 0.5},
    "0.85 SIFT + 0.15 MSER": {"sift": 0.85, "mser": 0.15},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--iterations", type=int, default=20, help="k-means iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="faiss threads")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    dataset = find_ukbench_images(args.images)
    print(f"{len(dataset.paths)} images, {len(set(dataset.groups.tolist()))} objects")

    for features_name, feature_config in (("map (default)", FeatureConfig()), ("fast", FeatureConfig.fast())):
        start = time.perf_counter()
        features = extract_all(dataset.paths, feature_config)
        print(f"\n{features_name} features: {time.perf_counter() - start:.1f} s for all images")
        for sizes in ({"sift": 5000, "mser": 2000}, {"sift": 2000, "mser": 500}):
            vocabularies = train_vocabularies(features, sizes, seed=args.seed, n_iter=args.iterations)
            words = [vocabularies.words(f) for f in features]
            label = f"{sizes['sift']} SIFT / {sizes['mser']} MSER words"
            for tf in ("raw", "sqrt"):
                for weight_name, weights in WEIGHTS.items():
                    ranked = ranked_results(
                        words, vocabularies.bag_sizes, weights, IndexConfig(tf_transform=tf)
                    )
                    score = ukbench_score(ranked, dataset.groups)
                    print(f"  {label:28s} tf={tf:4s} {weight_name:22s} UKBench {score:.3f}")


if __name__ == "__main__":
    main()
