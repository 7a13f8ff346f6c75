"""UKBench-style retrieval evaluation (Nistér & Stewénius 2006) of the whole BoVW chain.

Images ``ukbenchNNNNN.jpg`` come in groups of 4 consecutive numbers showing the same object. The
UKBench score is the mean, over all queries, of how many of the query's group are among its
top 4 results (the query itself included): 4.0 is perfect.

Here every image is both a reference view and a query, and the vocabularies are trained on the
evaluated images themselves (the subset is far too small to hold out a training set); that is
the protocol of the baseline the project compares with.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from geoloc_ros.bovw.errors import BovwError
from geoloc_ros.bovw.features import FeatureConfig, FeatureExtractor, FeatureSet
from geoloc_ros.bovw.index import IndexConfig, TfIdfIndex
from geoloc_ros.bovw.kinds import feature_kind
from geoloc_ros.bovw.vocabulary import Vocabularies, VocabularyConfig
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

GROUP_SIZE = 4
_NAME = re.compile(r"ukbench(\d+)\.jpg$", re.IGNORECASE)


@dataclass(frozen=True)
class UkbenchImages:
    paths: list[Path]
    groups: np.ndarray  # (n,) int64, object id of each image (number // 4)


def find_ukbench_images(directory: str | Path) -> UkbenchImages:
    """The ``ukbenchNNNNN.jpg`` files of a directory (or its ``images/`` subfolder), by number."""
    folder = Path(directory)
    if (folder / "images").is_dir():
        folder = folder / "images"
    numbered = sorted(
        (int(m.group(1)), p) for p in folder.glob("*") if (m := _NAME.search(p.name)) is not None
    )
    if not numbered:
        raise BovwError(f"{folder}: no ukbenchNNNNN.jpg images found")
    numbers = np.array([n for n, _ in numbered], dtype=np.int64)
    return UkbenchImages(paths=[p for _, p in numbered], groups=numbers // GROUP_SIZE)


def ukbench_score(ranked_view_ids: np.ndarray, groups: np.ndarray) -> float:
    """Mean number of same-group images in each query's first 4 results (query i = view i)."""
    ranked = np.asarray(ranked_view_ids)[:, :GROUP_SIZE]
    same = groups[ranked] == groups[: len(ranked), None]
    return float(same.sum(axis=1).mean())


def extract_all(paths: list[Path], config: FeatureConfig) -> list[FeatureSet]:
    extractor = FeatureExtractor(config)
    features = []
    for path in progress_bar(paths, desc="features", unit="image"):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise BovwError(f"{path}: cannot read image")
        features.append(extractor.extract(image))
    return features


def train_vocabularies(
    features: list[FeatureSet],
    n_words: Mapping[str, int],
    seed: int = 0,
    n_iter: int = 20,
    sample_size: int | None = None,
) -> Vocabularies:
    """Vocabularies of the given sizes trained on the descriptors of ``features`` (all of them,
    or a random ``sample_size`` per bag)."""
    descriptors = {
        name: np.concatenate([f.descriptors[f.kind == feature_kind(name).code] for f in features])
        for name in n_words
    }
    configs = {
        name: VocabularyConfig(
            n_words=size, seed=seed, n_iter=n_iter, sample_size=sample_size or max(2, len(descriptors[name]))
        )
        for name, size in n_words.items()
    }
    return Vocabularies.train(descriptors, configs)


def ranked_results(
    words: list[dict[str, np.ndarray]],
    bag_sizes: Mapping[str, int],
    weights: Mapping[str, float],
    index_config: IndexConfig | None = None,
    top_k: int = GROUP_SIZE,
) -> np.ndarray:
    """(n, top_k) view ids: every image queried against an index of all of them."""
    index = TfIdfIndex.build(bag_sizes, words, index_config)
    return np.stack(
        [index.query(w, top_k=top_k, weights=weights, max_touched_postings=None).view_ids for w in words]
    )
