"""Registry of feature kinds: the extension point for local features (as hloc's extractor confs).

A feature kind is one detector + descriptor: it has a name (its config name and its bag's name), a
code stored with every feature (:attr:`~geoloc_ros.bovw.features.FeatureSet.kind`, so map bundles
record it: a code is fixed forever once bundles use it), a factory of its per-thread extractor,
and the defaults the rest of the stack needs (vocabulary sizes, retrieval weights, whether queries
extract it only for global re-localization). SIFT (:mod:`geoloc_ros.bovw.sift`, code 0) and MSER
(:mod:`geoloc_ros.bovw.mser`, code 1) register themselves; adding a kind is one module calling
:func:`register_feature_kind` plus configuration (``FeatureConfig.kinds``, the bag's vocabulary and
weight). Every kind shares one descriptor space: 128 ``uint8`` components (quantised RootSIFT for
the built-in kinds), so vocabularies, the index and matching treat all kinds alike; the registry
refuses other dimensions or dtypes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from geoloc_ros.bovw.errors import FeatureKindError

if TYPE_CHECKING:
    from geoloc_ros.bovw.features import FeatureConfig, FeatureSet

DESCRIPTOR_DIM = 128
"""Components of every feature kind's descriptors (stored as uint8)."""

DEFAULT_FEATURE_KINDS = ("sift", "mser")
"""The kinds extracted by default (``FeatureConfig.kinds``), in this order."""


class KindExtractor(Protocol):
    """One kind's extractor (holds detector objects: one per thread)."""

    def extract(self, grey: np.ndarray, mask: np.ndarray | None) -> FeatureSet:
        """Features of a contiguous grey uint8 image; ``mask`` is None or uint8 0/1 of its shape."""
        ...


@dataclass(frozen=True)
class FeatureKindSpec:
    """What the stack needs to know about one feature kind (see the module docstring)."""

    name: str
    code: int
    """Stored in ``FeatureSet.kind`` and in map bundles (0..255, unique, never reused)."""
    create: Callable[[FeatureConfig], KindExtractor]
    max_features: Callable[[FeatureConfig], int]
    """Features kept per image under a config; 0 disables the kind."""
    default_words: int
    """Vocabulary size when none is configured (``Vocabularies.train``)."""
    map_words: int
    """Vocabulary size of a map build when ``vocabulary.<name>`` is not configured."""
    index_weight: float
    """Default weight of this kind's bag in retrieval (``QueryConfig.weights``)."""
    map_weight: float
    """Default weight of this kind's bag in a map bundle's retrieval and co-similarity."""
    on_demand: bool = False
    """Queries extract it only when global retrieval needs it (not while tracking)."""
    normalisation: str = "rootsift"
    """How descriptors are normalised before uint8 quantisation (documentation for the bundle)."""
    descriptor_dim: int = DESCRIPTOR_DIM
    descriptor_dtype: str = "uint8"


_REGISTRY: dict[str, FeatureKindSpec] = {}


def register_feature_kind(spec: FeatureKindSpec) -> FeatureKindSpec:
    """Add ``spec`` to the registry (its name and code must be new)."""
    if not spec.name.isidentifier():
        raise FeatureKindError(f"feature kind name {spec.name!r}: must be an identifier (it names files)")
    if spec.name in _REGISTRY:
        raise FeatureKindError(f"feature kind {spec.name!r} is already registered")
    if not 0 <= spec.code <= 255:
        raise FeatureKindError(f"feature kind {spec.name!r}: code {spec.code} is not in 0..255")
    taken = {s.code: s.name for s in _REGISTRY.values()}
    if spec.code in taken:
        raise FeatureKindError(
            f"feature kind {spec.name!r}: code {spec.code} is taken by {taken[spec.code]!r}"
        )
    if spec.descriptor_dim != DESCRIPTOR_DIM or spec.descriptor_dtype != "uint8":
        raise FeatureKindError(
            f"feature kind {spec.name!r}: descriptors must be {DESCRIPTOR_DIM} x uint8 (the shared "
            f"descriptor space), got {spec.descriptor_dim} x {spec.descriptor_dtype}"
        )
    _REGISTRY[spec.name] = spec
    return spec


def feature_kind(name: str) -> FeatureKindSpec:
    """The registered kind called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FeatureKindError(f"unknown feature kind {name!r}; registered: {sorted(_REGISTRY)}") from None


def feature_kind_names() -> tuple[str, ...]:
    """Names of the registered kinds, in registration order."""
    return tuple(_REGISTRY)
