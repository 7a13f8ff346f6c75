"""Bags of visual words: feature kinds (RootSIFT, MSER), faiss vocabularies, TF-IDF index, co-similarity.

Feature kinds are a registry (:mod:`geoloc_ros.bovw.kinds`): one bag per kind.

Offline (map build): :class:`FeatureExtractor` on every view -> :meth:`Vocabularies.train` on a
sample of descriptors (:class:`DescriptorSampler`) -> :meth:`TfIdfIndex.build` from each view's
:meth:`Vocabularies.words` -> :func:`cosimilarity_topk` and, with the view graph,
:func:`support_graph`. Online (per frame): :class:`Retriever` (features -> words -> top-K), then
:func:`rerank`.
"""

from geoloc_ros.bovw.cosimilarity import (
    CosimilarityConfig,
    RerankConfig,
    Topology,
    cosimilarity_block,
    cosimilarity_from_arrays,
    cosimilarity_on_edges,
    cosimilarity_to_arrays,
    cosimilarity_topk,
    rerank,
    support_graph,
)
from geoloc_ros.bovw.errors import (
    BovwError,
    CosimilarityError,
    DescriptorError,
    FeatureInputError,
    FeatureKindError,
    RetrievalIndexError,
    VocabularyError,
)
from geoloc_ros.bovw.features import (
    ROOTSIFT_UINT8_SCALE,
    FeatureConfig,
    FeatureExtractor,
    FeatureKind,
    FeatureSet,
    dequantize_rootsift,
    quantize_rootsift,
    rootsift,
)
from geoloc_ros.bovw.index import IndexConfig, QueryConfig, RetrievalResult, TfIdfIndex
from geoloc_ros.bovw.kinds import (
    DEFAULT_FEATURE_KINDS,
    FeatureKindSpec,
    KindExtractor,
    feature_kind,
    feature_kind_names,
    register_feature_kind,
)
from geoloc_ros.bovw.retrieval import RetrievalTimings, Retriever
from geoloc_ros.bovw.vocabulary import (
    DescriptorSampler,
    Vocabularies,
    Vocabulary,
    VocabularyConfig,
)

__all__ = [
    "DEFAULT_FEATURE_KINDS",
    "ROOTSIFT_UINT8_SCALE",
    "BovwError",
    "CosimilarityConfig",
    "CosimilarityError",
    "DescriptorError",
    "DescriptorSampler",
    "FeatureConfig",
    "FeatureExtractor",
    "FeatureInputError",
    "FeatureKind",
    "FeatureKindError",
    "FeatureKindSpec",
    "FeatureSet",
    "IndexConfig",
    "KindExtractor",
    "QueryConfig",
    "RerankConfig",
    "RetrievalIndexError",
    "RetrievalResult",
    "RetrievalTimings",
    "Retriever",
    "TfIdfIndex",
    "Topology",
    "Vocabularies",
    "Vocabulary",
    "VocabularyConfig",
    "VocabularyError",
    "cosimilarity_block",
    "cosimilarity_from_arrays",
    "cosimilarity_on_edges",
    "cosimilarity_to_arrays",
    "cosimilarity_topk",
    "dequantize_rootsift",
    "feature_kind",
    "feature_kind_names",
    "quantize_rootsift",
    "register_feature_kind",
    "rerank",
    "rootsift",
    "support_graph",
]
