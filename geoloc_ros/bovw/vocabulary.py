"""Visual vocabularies: faiss k-means over RootSIFT descriptors, quantisation with faiss.

A vocabulary is a (K, 128) float32 array of centroids in the uint8 RootSIFT units of
:mod:`geoloc_ros.bovw.features` (``descriptors.astype(float32)``). Words are the nearest centroid
in L2 (= Hellinger distance of the underlying SIFT vectors).

Quantisers (``VocabularyConfig.quantizer``):

* ``"flat"``: exact nearest centroid (faiss ``IndexFlatL2``, a BLAS product per batch).
* ``"ivf"``: ``IndexIVFFlat`` over the centroids: each descriptor is compared with the centroids of
  the ``ivf_probe`` nearest of ``ivf_lists`` coarse cells only. Several times faster for 5000
  words; the share of descriptors given another word than the exact one is measured in
  bench/bench_retrieval_scaling.py (a word that is not the nearest is still a near one, so
  retrieval barely changes). HNSW was measured too and was not faster than the flat quantiser at
  equal agreement for vocabularies of this size, so it is not offered.

Files (:meth:`Vocabulary.write_into` / :meth:`Vocabulary.load`): ``{name}.centroids.npy``
(memory-mappable) and ``{name}.vocabulary.json`` (the config and the word count).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import Field

from geoloc_ros.bovw.errors import DescriptorError, VocabularyError
from geoloc_ros.bovw.features import FeatureSet
from geoloc_ros.bovw.kinds import DESCRIPTOR_DIM, feature_kind, feature_kind_names
from geoloc_ros.config import StrictModel, validate_mapping
from geoloc_ros.io.atomic import atomic_directory, atomic_write_json

logger = logging.getLogger(__name__)

VOCABULARY_FORMAT = 1


class VocabularyConfig(StrictModel):
    """How a vocabulary is trained and how descriptors are quantised against it."""

    n_words: int = Field(5000, ge=2, description="k of the k-means")
    sample_size: int = Field(500_000, ge=2, description="descriptors drawn at random for training")
    n_iter: int = Field(20, ge=1, description="k-means iterations")
    seed: int = Field(0, ge=0)
    quantizer: Literal["flat", "ivf"] = "flat"
    ivf_lists: int | None = Field(None, ge=1, description="coarse cells; default 2 sqrt(n_words)")
    ivf_probe: int = Field(8, ge=1, description="coarse cells visited per descriptor")


def check_descriptors(descriptors: Any, what: str = "descriptors") -> np.ndarray:
    """``descriptors`` as a (N, 128) uint8 array, or a :class:`DescriptorError` naming ``what``."""
    if not isinstance(descriptors, np.ndarray):
        raise DescriptorError(f"{what}: expected a numpy array, got {type(descriptors).__name__}")
    if descriptors.dtype != np.uint8:
        raise DescriptorError(f"{what}: expected uint8 (quantised RootSIFT), got {descriptors.dtype}")
    if descriptors.ndim != 2 or descriptors.shape[1] != DESCRIPTOR_DIM:
        raise DescriptorError(f"{what}: expected shape (N, {DESCRIPTOR_DIM}), got {descriptors.shape}")
    return descriptors


class DescriptorSampler:
    """A uniform random sample of at most ``sample_size`` descriptors from a stream of batches.

    Priority sampling: every descriptor gets a uniform random key and the smallest keys are kept,
    so the result is deterministic for a seed and an order of batches, and memory stays bounded
    however many views are streamed.
    """

    def __init__(self, sample_size: int, seed: int = 0) -> None:
        if sample_size < 1:
            raise VocabularyError(f"DescriptorSampler: sample_size must be >= 1, got {sample_size}")
        self.sample_size = sample_size
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0, dtype=np.float64)
        self._rows = np.zeros((0, DESCRIPTOR_DIM), dtype=np.uint8)
        self.seen = 0

    def add(self, descriptors: np.ndarray) -> None:
        batch = check_descriptors(descriptors, "DescriptorSampler.add")
        keys = self._rng.random(len(batch))
        self.seen += len(batch)
        all_keys = np.concatenate([self._keys, keys])
        all_rows = np.concatenate([self._rows, batch])
        if len(all_keys) > self.sample_size:
            keep = np.argpartition(all_keys, self.sample_size - 1)[: self.sample_size]
            all_keys, all_rows = all_keys[keep], all_rows[keep]
        self._keys, self._rows = all_keys, all_rows

    def sample(self) -> np.ndarray:
        """The kept descriptors, in key order (so the result does not depend on batch boundaries)."""
        return self._rows[np.argsort(self._keys, kind="stable")]


class Vocabulary:
    """K visual words (centroids) and a faiss quantiser over them."""

    def __init__(self, centroids: np.ndarray, config: VocabularyConfig) -> None:
        if (
            not isinstance(centroids, np.ndarray)
            or centroids.dtype != np.float32
            or centroids.ndim != 2
            or centroids.shape[1] != DESCRIPTOR_DIM
        ):
            got = (
                f"{centroids.dtype}{centroids.shape}"
                if isinstance(centroids, np.ndarray)
                else type(centroids).__name__
            )
            raise VocabularyError(f"Vocabulary: centroids must be float32 (K, {DESCRIPTOR_DIM}), got {got}")
        if len(centroids) != config.n_words:
            raise VocabularyError(
                f"Vocabulary: {len(centroids)} centroids but config.n_words = {config.n_words}"
            )
        self.centroids = centroids
        self.config = config
        self._index = self._build_quantizer()

    @property
    def n_words(self) -> int:
        return len(self.centroids)

    def __getstate__(self) -> dict[str, Any]:
        # faiss indexes do not pickle; the quantiser is rebuilt from the centroids (for Dask workers).
        return {"centroids": np.asarray(self.centroids), "config": self.config.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.centroids = state["centroids"]
        self.config = VocabularyConfig(**state["config"])
        self._index = self._build_quantizer()

    def _build_quantizer(self) -> faiss.Index:
        cfg = self.config
        data = np.ascontiguousarray(self.centroids, dtype=np.float32)
        if cfg.quantizer == "flat":
            flat = faiss.IndexFlatL2(DESCRIPTOR_DIM)
            flat.add(data)
            return flat
        n_lists = cfg.ivf_lists or max(1, round(2 * math.sqrt(self.n_words)))
        n_lists = min(n_lists, self.n_words)
        coarse = faiss.IndexFlatL2(DESCRIPTOR_DIM)
        ivf = faiss.IndexIVFFlat(coarse, DESCRIPTOR_DIM, n_lists)
        ivf.cp.seed = cfg.seed
        ivf.cp.min_points_per_centroid = 1
        ivf.train(data)
        ivf.add(data)
        ivf.nprobe = min(cfg.ivf_probe, n_lists)
        # The IVF index points to the coarse quantiser without owning it: keep it alive.
        self._coarse = coarse
        return ivf

    @classmethod
    def train(cls, descriptors: np.ndarray, config: VocabularyConfig | None = None) -> Vocabulary:
        """k-means (faiss, seeded) on at most ``config.sample_size`` of ``descriptors`` (N, 128) uint8."""
        cfg = config if config is not None else VocabularyConfig()
        data = check_descriptors(descriptors, "Vocabulary.train")
        if len(data) > cfg.sample_size:
            pick = np.random.default_rng(cfg.seed).choice(len(data), size=cfg.sample_size, replace=False)
            data = data[np.sort(pick)]
        if len(data) < cfg.n_words:
            raise VocabularyError(
                f"Vocabulary.train: {len(data)} descriptors for {cfg.n_words} words; "
                "give more descriptors or fewer words"
            )
        if len(data) < 39 * cfg.n_words:
            logger.warning(
                "training %d words on only %d descriptors (faiss advises >= 39 per word)",
                cfg.n_words,
                len(data),
            )
        kmeans = faiss.Kmeans(
            DESCRIPTOR_DIM,
            cfg.n_words,
            niter=cfg.n_iter,
            seed=cfg.seed,
            verbose=False,
            max_points_per_centroid=max(256, math.ceil(len(data) / cfg.n_words)),
        )
        logger.info("training a %d-word vocabulary on %d descriptors", cfg.n_words, len(data))
        kmeans.train(np.ascontiguousarray(data, dtype=np.float32))
        return cls(np.ascontiguousarray(kmeans.centroids, dtype=np.float32), cfg)

    def quantize(self, descriptors: np.ndarray) -> np.ndarray:
        """Word id (int32, in [0, n_words)) of each descriptor of a (N, 128) uint8 array."""
        data = check_descriptors(descriptors, "Vocabulary.quantize")
        if len(data) == 0:
            return np.zeros(0, dtype=np.int32)
        _, labels = self._index.search(np.ascontiguousarray(data, dtype=np.float32), 1)
        words = labels[:, 0].astype(np.int32)
        if np.any(words < 0):
            # An IVF probe that found no list entry; only possible with tiny ivf_probe settings.
            missing = words < 0
            _, exact = faiss.knn(data[missing].astype(np.float32), self.centroids, 1)
            words[missing] = exact[:, 0]
        return words

    def parameters(self) -> dict[str, Any]:
        """What a map manifest records about this vocabulary."""
        return {"format": VOCABULARY_FORMAT, "n_words": self.n_words, "config": self.config.model_dump()}

    def write_into(self, directory: str | Path, name: str) -> list[Path]:
        """Write ``{name}.centroids.npy`` and ``{name}.vocabulary.json`` into an existing directory.

        Meant for a directory being built atomically (e.g. inside :func:`atomic_directory`).
        """
        folder = Path(directory)
        centroids_path = folder / f"{name}.centroids.npy"
        meta_path = folder / f"{name}.vocabulary.json"
        np.save(centroids_path, self.centroids, allow_pickle=False)
        atomic_write_json(meta_path, self.parameters())
        return [centroids_path, meta_path]

    def save(self, directory: str | Path, name: str, overwrite: bool = False) -> list[Path]:
        """Write the vocabulary files into a new directory, atomically."""
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            written = self.write_into(tmp, name)
        return [Path(directory) / p.name for p in written]

    @classmethod
    def load(cls, directory: str | Path, name: str, mmap: bool = True) -> Vocabulary:
        folder = Path(directory)
        meta_path = folder / f"{name}.vocabulary.json"
        centroids_path = folder / f"{name}.centroids.npy"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VocabularyError(f"{meta_path}: vocabulary file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise VocabularyError(f"{meta_path}: cannot read vocabulary metadata: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != VOCABULARY_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise VocabularyError(f"{meta_path}: vocabulary format {found!r}, expected {VOCABULARY_FORMAT}")
        config = validate_mapping(VocabularyConfig, meta.get("config"), f"{meta_path}: config")
        try:
            centroids = np.load(centroids_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise VocabularyError(f"{centroids_path}: vocabulary file not found") from None
        except (OSError, ValueError) as exc:
            raise VocabularyError(f"{centroids_path}: cannot read centroids: {exc}") from None
        try:
            return cls(centroids, config)
        except VocabularyError as exc:
            raise VocabularyError(f"{centroids_path}: {exc}") from None


class Vocabularies:
    """One vocabulary per bag: turns a :class:`FeatureSet` into words per bag.

    A bag is named after the feature kind it quantises (:mod:`geoloc_ros.bovw.kinds`).
    """

    def __init__(self, by_bag: Mapping[str, Vocabulary]) -> None:
        if not by_bag:
            raise VocabularyError("Vocabularies: no bag given")
        unknown = set(by_bag) - set(feature_kind_names())
        if unknown:
            raise VocabularyError(
                f"Vocabularies: bags must be among the feature kinds {sorted(feature_kind_names())}, "
                f"got {sorted(by_bag)}"
            )
        self._codes = {name: feature_kind(name).code for name in by_bag}
        self.by_bag = dict(by_bag)

    @property
    def bag_sizes(self) -> dict[str, int]:
        return {name: vocab.n_words for name, vocab in self.by_bag.items()}

    @classmethod
    def train(
        cls, descriptors: Mapping[str, np.ndarray], configs: Mapping[str, VocabularyConfig] | None = None
    ) -> Vocabularies:
        """Train each bag's vocabulary on its descriptors (default size: the kind's ``default_words``)."""
        chosen = dict(configs or {})
        trained = {}
        for name, rows in descriptors.items():
            config = chosen.get(name) or VocabularyConfig(n_words=feature_kind(name).default_words)
            trained[name] = Vocabulary.train(rows, config)
        return cls(trained)

    def words(self, features: FeatureSet) -> dict[str, np.ndarray]:
        """Word ids (int32) of the features of each bag's kind."""
        return {
            name: vocab.quantize(features.descriptors[features.kind == self._codes[name]])
            for name, vocab in self.by_bag.items()
        }

    def with_quantizer(
        self, quantizer: Literal["flat", "ivf"], ivf_lists: int | None = None, ivf_probe: int = 8
    ) -> Vocabularies:
        """The same words (shared centroids) with another quantiser, e.g. ``ivf`` for queries."""
        return Vocabularies(
            {
                name: Vocabulary(
                    vocab.centroids,
                    vocab.config.model_copy(
                        update={"quantizer": quantizer, "ivf_lists": ivf_lists, "ivf_probe": ivf_probe}
                    ),
                )
                for name, vocab in self.by_bag.items()
            }
        )

    def write_into(self, directory: str | Path) -> list[Path]:
        """``vocabulary_{bag}.*`` files for every bag, into an existing directory."""
        written: list[Path] = []
        for name, vocab in self.by_bag.items():
            written += vocab.write_into(directory, vocabulary_file_stem(name))
        return written

    @classmethod
    def load(
        cls, directory: str | Path, bags: Iterable[str] = ("sift", "mser"), mmap: bool = True
    ) -> Vocabularies:
        return cls({name: Vocabulary.load(directory, vocabulary_file_stem(name), mmap=mmap) for name in bags})


def vocabulary_file_stem(bag: str) -> str:
    """Stem of a bag's vocabulary files (``<stem>.centroids.npy``, ``<stem>.vocabulary.json``)."""
    return f"vocabulary_{bag}"
