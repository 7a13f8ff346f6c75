"""Benchmark: BoVW retrieval latency, accuracy, bundle size and memory at 1k, 10k and 100k views.

Synthetic maps (no images): every view holds ``--view-sift`` SIFT and ``--view-mser`` MSER words
drawn from a power law p(rank) ~ rank^-0.4 over the 5000 + 2000-word vocabularies (the slope
measured on the UKBench subset quantised with our vocabularies; top 10 % of words = 26 % of
occurrences). A query is a noisy copy of a random view: a share (``--overlaps``) of its features
are words of that view, the rest random draws; it holds ``--query-sift`` + ``--query-mser``
features (the counts FeatureConfig.fast() extracts from real 640x480 photos, bench_features.py)
whose descriptors are the words' centroids plus noise, so the quantisers do real work.
Everything is timed on ONE core (faiss.omp_set_num_threads(1)); each query step is the best of 2
consecutive calls (so every variant sees equally warm caches).

Per map size (each in a fresh process, so its peak RSS is its own): index build time; bytes per
view of the index arrays and of the per-view feature arrays the bundle stores; peak RSS; query
latency split into quantisation (flat and IVF) and scoring + top-10: exact, with each postings
cap of ``--caps`` (two-stage: pruned query, then ``--rescore`` candidates rescored exactly; see
geoloc_ros.bovw.index), and restricted to 300 views around a position prior; the speed-up of the
default cap over exact scoring (baseline measured in the same process); top-1 and top-10
recovery of the source view for each variant; and the co-similarity cost per view: all-pairs
top-K (projected to the whole map) and on the edges of a street-like view graph.

    .venv/bin/python bench/bench_retrieval_scaling.py [--sizes 1000 10000 100000] [--queries 100]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from collections.abc import Iterator

import faiss
import numpy as np

from geoloc_ros.bovw.cosimilarity import (
    CosimilarityConfig,
    Topology,
    cosimilarity_block,
    cosimilarity_on_edges,
)
from geoloc_ros.bovw.features import DESCRIPTOR_DIM, FeatureSet
from geoloc_ros.bovw.index import QueryConfig, TfIdfIndex
from geoloc_ros.bovw.vocabulary import Vocabularies, Vocabulary, VocabularyConfig

WORDS = {"sift": 5000, "mser": 2000}
ZIPF_SLOPE = 0.4


def word_probabilities(n_words: int, seed: int) -> np.ndarray:
    """Power-law word frequencies, assigned to word ids in a random order."""
    p = np.arange(1, n_words + 1, dtype=np.float64) ** -ZIPF_SLOPE
    p /= p.sum()
    return p[np.random.default_rng(seed).permutation(n_words)]


def view_words(view: int, probabilities: dict[str, np.ndarray], counts: dict[str, int], seed: int) -> dict:
    rng = np.random.default_rng([seed, view])
    return {bag: rng.choice(len(p), size=counts[bag], p=p) for bag, p in probabilities.items()}


def synthetic_vocabularies(seed: int) -> Vocabularies:
    rng = np.random.default_rng(seed)
    by_bag = {}
    for bag, n in WORDS.items():
        # RootSIFT-like centroids in uint8 units: non-negative, unit norm x 512.
        raw = rng.gamma(0.6, 1.0, (n, DESCRIPTOR_DIM))
        centroids = (raw / np.linalg.norm(raw, axis=1, keepdims=True) * 512.0).astype(np.float32)
        by_bag[bag] = Vocabulary(centroids, VocabularyConfig(n_words=n, seed=seed))
    return Vocabularies(by_bag)


def descriptors_for(words: np.ndarray, vocabulary: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    noisy = vocabulary.centroids[words] + rng.normal(0.0, 12.0, (len(words), DESCRIPTOR_DIM))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = CLOCKS["wall"]


def timed(function, *args, repeats: int = 1):
    """Result and the best time (ms, on ``clock``) of ``repeats`` consecutive calls."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        result = function(*args)
        best = min(best, (clock() - start) * 1e3)
    return result, best


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def run_size(n_views: int, args: argparse.Namespace) -> dict:
    global clock  # noqa: PLW0603 - the worker process picks the clock chosen on the command line
    clock = CLOCKS[args.clock]
    faiss.omp_set_num_threads(1)
    probabilities = {bag: word_probabilities(n, args.seed + i) for i, (bag, n) in enumerate(WORDS.items())}
    per_view = {"sift": args.view_sift, "mser": args.view_mser}

    def views() -> Iterator[dict]:
        for v in range(n_views):
            yield view_words(v, probabilities, per_view, args.seed)

    index, build_ms = timed(TfIdfIndex.build, WORDS, views(), None, n_views)
    index_bytes = sum(a.nbytes for a in index.arrays().values())
    vocabularies = synthetic_vocabularies(args.seed)
    ivf = vocabularies.with_quantizer("ivf")

    rng = np.random.default_rng(args.seed + 1)
    query_counts = {"sift": args.query_sift, "mser": args.query_mser}
    caps: list[int | None] = [None, *args.caps]
    times: dict[str, list[float]] = {"q_flat": [], "q_ivf": [], "prior": []}
    times.update({f"cap {c}": [] for c in caps})
    top1 = {(o, c): 0 for o in args.overlaps for c in caps}
    top10 = {(o, c): 0 for o in args.overlaps for c in caps}
    for q in range(args.queries * len(args.overlaps)):
        share = args.overlaps[q % len(args.overlaps)]
        source = int(rng.integers(n_views))
        query = noisy_copy(
            view_words(source, probabilities, per_view, args.seed),
            share,
            query_counts,
            probabilities,
            vocabularies,
            rng,
        )
        _, t = timed(vocabularies.words, query, repeats=2)
        times["q_flat"].append(t)
        words, t = timed(ivf.words, query, repeats=2)
        times["q_ivf"].append(t)
        for cap in caps:
            result, t = timed(index.query, words, 10, None, None, cap, args.rescore, repeats=2)
            times[f"cap {cap}"].append(t)
            top1[(share, cap)] += int(result.view_ids[0] == source)
            top10[(share, cap)] += int(source in result.view_ids)
        around = np.unique(np.clip(source + rng.integers(-150, 150, 300), 0, n_views - 1))
        _, t = timed(index.query, words, 10, None, around, None, repeats=2)
        times["prior"].append(t)

    rows = min(n_views, args.cosim_rows)
    _, cosim_ms = timed(cosimilarity_block, index, (0, rows), CosimilarityConfig(top_k=20))
    # Edge co-similarity on a street-like graph: the first views linked to their 24 successors
    # (two panoramas of 12 yaws), the rest isolated.
    linked = min(n_views - 24, 2000)
    first = np.repeat(np.arange(linked), 24)
    second = first + np.tile(np.arange(1, 25), linked)
    topology = Topology.from_pairs(n_views, first, second, np.full(len(first), 5.0))
    _, edges_ms = timed(cosimilarity_on_edges, index, topology)
    one = FeatureSet.empty((640, 480)).to_arrays()
    bytes_per_feature = sum(
        a.dtype.itemsize * int(np.prod(a.shape[1:])) for k, a in one.items() if k != "image_size"
    )
    return {
        "n_views": n_views,
        "build_s": build_ms / 1e3,
        "postings": int(index.counts.nnz),
        "index_bytes_per_view": index_bytes / n_views,
        "feature_bytes_per_view": bytes_per_feature * (args.view_sift + args.view_mser),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "times": {k: (statistics.median(v), p95(v)) for k, v in times.items()},
        "top1": {k: v / args.queries for k, v in top1.items()},
        "top10": {k: v / args.queries for k, v in top10.items()},
        "cosim_ms_per_view": cosim_ms / rows,
        "edges_ms_per_view": edges_ms / linked,
    }


def noisy_copy(
    source_words: dict[str, np.ndarray],
    share: float,
    counts: dict[str, int],
    probabilities: dict[str, np.ndarray],
    vocabularies: Vocabularies,
    rng: np.random.Generator,
) -> FeatureSet:
    """Query features: ``share`` of them on words of the source view, the rest random words."""
    kinds, descriptors = [], []
    for kind, (bag, n) in enumerate(counts.items()):
        copied = rng.random(n) < share
        words = np.where(
            copied,
            rng.choice(source_words[bag], size=n),
            rng.choice(len(probabilities[bag]), size=n, p=probabilities[bag]),
        )
        descriptors.append(descriptors_for(words, vocabularies.by_bag[bag], rng))
        kinds.append(np.full(n, kind, np.uint8))
    n_total = sum(counts.values())
    return FeatureSet(
        keypoints_xy=np.zeros((n_total, 2), np.float32),
        size=np.ones(n_total, np.float32),
        angle=np.zeros(n_total, np.float32),
        response=np.zeros(n_total, np.float32),
        kind=np.concatenate(kinds),
        descriptors=np.concatenate(descriptors),
        image_size=(640, 480),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--view-sift", type=int, default=1100, help="SIFT features per map view")
    parser.add_argument("--view-mser", type=int, default=260, help="MSER features per map view")
    parser.add_argument(
        "--query-sift",
        type=int,
        default=500,
        help="SIFT features per query (FeatureConfig.fast() gives ~490)",
    )
    parser.add_argument(
        "--query-mser",
        type=int,
        default=180,
        help="MSER features per query (FeatureConfig.fast() gives ~180)",
    )
    parser.add_argument(
        "--overlaps",
        type=float,
        nargs="+",
        default=[0.3, 0.15],
        help="shares of query features from the source view (one query set each)",
    )
    parser.add_argument("--cosim-rows", type=int, default=100, help="rows timed for the co-similarity cost")
    parser.add_argument(
        "--caps",
        type=int,
        nargs="+",
        default=[QueryConfig().max_touched_postings, 1_000_000],
        help="max_touched_postings values to compare with exact scoring (default: QueryConfig's, 1M)",
    )
    parser.add_argument(
        "--rescore",
        type=int,
        default=QueryConfig().rescore_candidates,
        help="candidates rescored when capped",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or this thread's CPU time (steadier on a machine shared with other jobs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    results = []
    for n in args.sizes:
        with context.Pool(1) as pool:
            results.append(pool.apply(run_size, (n, args)))
        r = results[-1]
        print(f"{n} views built in {r['build_s']:.1f} s ({r['postings']} postings)", flush=True)

    caps = [None, *args.caps]
    print(
        f"\none core, {args.queries} queries per overlap of {args.query_sift}+{args.query_mser} features, "
        f"views of {args.view_sift}+{args.view_mser} features; median (p95) ms of {args.clock} time"
    )
    score_names = "".join(f"{'score ' + ('exact' if c is None else f'cap {c / 1e6:g}M'):>16s}" for c in caps)
    print(
        f"{'views':>7s}{'quant flat':>14s}{'quant ivf':>14s}{score_names}"
        f"{'300 prior':>14s}{'best total':>12s}"
    )
    for r in results:
        t = r["times"]
        cells = "".join(f"{t[f'cap {c}'][0]:8.1f} ({t[f'cap {c}'][1]:5.1f})" for c in caps)
        best = t["q_ivf"][0] + min(t[f"cap {c}"][0] for c in caps)
        print(
            f"{r['n_views']:7d}{t['q_flat'][0]:7.1f} ({t['q_flat'][1]:4.1f})"
            f"{t['q_ivf'][0]:7.1f} ({t['q_ivf'][1]:4.1f})"
            f"{cells}{t['prior'][0]:7.1f} ({t['prior'][1]:4.1f}){best:12.1f}"
        )
    default = QueryConfig().max_touched_postings
    if default in caps:
        speedups = ", ".join(
            f"{r['n_views']}: x{r['times']['cap None'][0] / r['times'][f'cap {default}'][0]:.1f}"
            for r in results
        )
        print(f"speed-up of the default cap ({default / 1e6:g}M) over exact scoring: {speedups}")
    print("'best total' = IVF quantisation + the fastest scoring column (medians)")
    print("\ntop-1 / top-10 recovery of the source view, by share of query features from it")
    header = "".join(
        f"{f'ov {o:g} ' + ('exact' if c is None else f'cap {c / 1e6:g}M'):>17s}"
        for o in args.overlaps
        for c in caps
    )
    print(f"{'views':>7s}{header}")
    for r in results:
        print(
            f"{r['n_views']:7d}"
            + "".join(
                f"{r['top1'][(o, c)]:9.2f}/{r['top10'][(o, c)]:.2f}" for o in args.overlaps for c in caps
            )
        )
    print(
        f"\n{'views':>7s} {'index B/view':>12s} {'features B/view':>15s} {'peak RSS MB':>11s} "
        f"{'cosim ms/view':>13s} {'cosim all (h)':>13s} {'edges ms/view':>13s}"
    )
    for r in results:
        print(
            f"{r['n_views']:7d} {r['index_bytes_per_view']:12.0f} {r['feature_bytes_per_view']:15.0f} "
            f"{r['peak_rss_mb']:11.0f} {r['cosim_ms_per_view']:13.1f} "
            f"{r['cosim_ms_per_view'] * r['n_views'] / 3.6e6:13.2f} {r['edges_ms_per_view']:13.3f}"
        )
    print(
        "features B/view: descriptors + keypoint arrays of FeatureSet (3-D points, added by the map "
        "bundle, not counted); vocabularies add a fixed 3.6 MB. cosim: all-pairs top-20 (all: one core, "
        "projected); edges: cosimilarity_on_edges, 24 neighbours a view."
    )


if __name__ == "__main__":
    main()
