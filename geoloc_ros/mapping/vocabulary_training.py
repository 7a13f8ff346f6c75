"""Large visual vocabularies in minutes: two-level (coarse-to-fine) k-means with faiss.

A flat k-means of ``K`` words costs ``N K`` distance computations per iteration. The two-level
method first clusters the sample into ``C`` coarse cells (``C ~ sqrt(K)``), then clusters each
cell's descriptors into a number of words proportional to the cell's size (largest remainder, so
exactly ``K`` words in total): about ``N (C + K / C)`` distance computations per iteration. The
coarse level trains on at most :data:`COARSE_POINTS_PER_CELL` points per cell (every point is then
assigned to its nearest cell exactly), which halves the cost on a large sample. On
200,000 SIFT descriptors of the standard map, 5000 words train 4.4x faster than with faiss's flat
k-means, and 30,000 words take a quarter of the time flat k-means needs for 5000
(``bench/bench_map_build.py --compare-vocabulary``). The words are ordinary centroids:
:class:`~geoloc_ros.bovw.vocabulary.Vocabulary` quantises against them exactly (``flat``) or
through its IVF index (``ivf``). It is the vocabulary-tree idea (Nistér & Stewénius 2006) with two
levels and a balanced word budget.
"""

from __future__ import annotations

import logging
import math

import faiss
import numpy as np

from geoloc_ros.bovw.features import DESCRIPTOR_DIM
from geoloc_ros.bovw.vocabulary import Vocabulary, VocabularyConfig, check_descriptors
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

COARSE_POINTS_PER_CELL = 1024
"""Points per coarse cell the first level trains on, at most (4x faiss's own default sampling rate)."""


def allot_words(cell_sizes: np.ndarray, n_words: int) -> np.ndarray:
    """Words per cell, proportional to its size, summing to ``n_words``, at most one word per point.

    Largest-remainder rounding; every non-empty cell gets at least one word while words remain.
    """
    sizes = np.asarray(cell_sizes, dtype=np.int64)
    total = int(sizes.sum())
    if n_words > total:
        raise MapBuildError(f"cannot make {n_words} words from {total} descriptors")
    quota = sizes * (n_words / max(total, 1))
    words = np.minimum(np.floor(quota).astype(np.int64), sizes)
    words[(sizes > 0) & (words == 0)] = 1
    # Give or take single words by remainder until the total is exact (never beyond a cell's size).
    while words.sum() < n_words:
        room = np.flatnonzero(words < sizes)
        words[room[np.argmax(quota[room] - words[room])]] += 1
    while words.sum() > n_words:
        spare = np.flatnonzero(words > 1)
        words[spare[np.argmax(words[spare] - quota[spare])]] -= 1
    return words


def _kmeans(
    data: np.ndarray, k: int, n_iter: int, seed: int, max_points_per_centroid: int | None = None
) -> np.ndarray:
    """``k`` float32 centroids of ``data`` (float32) by faiss k-means (the points themselves if k = n).

    ``max_points_per_centroid``: faiss trains on a random subset of at most that many points per
    centroid (default: every point, and at least 256 per centroid)."""
    if k >= len(data):
        return np.ascontiguousarray(data[:k], dtype=np.float32)
    if k == 1:
        return data.mean(axis=0, keepdims=True).astype(np.float32)
    kmeans = faiss.Kmeans(
        DESCRIPTOR_DIM,
        k,
        niter=n_iter,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,  # small cells are expected: no warning for them
        max_points_per_centroid=max_points_per_centroid or max(256, math.ceil(len(data) / k)),
    )
    kmeans.train(data)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def train_two_level(
    descriptors: np.ndarray, config: VocabularyConfig, coarse_cells: int | None = None
) -> Vocabulary:
    """A ``config.n_words`` vocabulary by two-level k-means on (at most ``config.sample_size`` of)
    ``descriptors`` (N, 128) uint8; ``coarse_cells`` defaults to ``round(sqrt(n_words))``."""
    data = check_descriptors(descriptors, "train_two_level")
    if len(data) > config.sample_size:
        pick = np.random.default_rng(config.seed).choice(len(data), size=config.sample_size, replace=False)
        data = data[np.sort(pick)]
    n_words = config.n_words
    if len(data) < n_words:
        raise MapBuildError(f"{len(data)} descriptors cannot make a {n_words}-word vocabulary")
    points = np.ascontiguousarray(data, dtype=np.float32)
    cells = min(coarse_cells or max(1, round(math.sqrt(n_words))), n_words)
    logger.info("two-level k-means: %d words in %d cells from %d descriptors", n_words, cells, len(points))
    # The coarse cells only partition the sample: a subset of COARSE_POINTS_PER_CELL points per
    # cell places them as well, at a fraction of the cost (every point is then assigned exactly).
    coarse = _kmeans(points, cells, config.n_iter, config.seed, COARSE_POINTS_PER_CELL)
    _, assignment = faiss.knn(points, coarse, 1)
    cell_of_point = assignment[:, 0]
    order = np.argsort(cell_of_point, kind="stable")
    sizes = np.bincount(cell_of_point, minlength=len(coarse))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    words = allot_words(sizes, n_words)
    centroids = np.empty((n_words, DESCRIPTOR_DIM), dtype=np.float32)
    filled = 0
    for cell in progress_bar(range(len(coarse)), desc="vocabulary cells", unit="cell"):
        if words[cell] == 0:
            continue
        members = points[order[starts[cell] : starts[cell + 1]]]
        centroids[filled : filled + words[cell]] = _kmeans(
            members, int(words[cell]), config.n_iter, config.seed + 1 + cell
        )
        filled += int(words[cell])
    return Vocabulary(centroids, config)
