"""Settings of the map build (:class:`MapBuildConfig`), loadable from YAML with ``geoloc map build --config``.

Every section has the defaults of the benchmark map (the seed's method: 12 rectified views per
panorama plus virtual views 4 m along the street, SIFT 5000 + MSER 2000 words). The resolved
config is stored in the bundle's manifest (``build_config``), so :class:`~geoloc_ros.mapping.map.MapBundle`
and incremental additions use the very settings the bundle was built with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from geoloc_ros.bovw.cosimilarity import CosimilarityConfig, RerankConfig
from geoloc_ros.bovw.features import FeatureConfig
from geoloc_ros.bovw.index import IndexConfig, QueryConfig
from geoloc_ros.bovw.kinds import DEFAULT_FEATURE_KINDS, feature_kind
from geoloc_ros.bovw.vocabulary import VocabularyConfig
from geoloc_ros.config import StrictModel
from geoloc_ros.gis.views import ViewSynthesisConfig


def _map_vocabulary(n_words: int) -> VocabularyConfig:
    return VocabularyConfig(n_words=n_words, sample_size=1_000_000, quantizer="ivf")


class VocabulariesConfig(StrictModel):
    """One vocabulary per bag, trained on a random sample of the map's descriptors.

    The map defaults are larger than the seed's 5000 SIFT / 2000 MSER words: on the standard
    scenario, 30000 / 8000 words raise pure-retrieval top-1 from about 86 % to about 94 %
    (bench/bench_map_retrieval.py, docs/map_bundle.md). ``two_level`` k-means trains them in a minute or two
    (:mod:`geoloc_ros.mapping.vocabulary_training`); ``flat`` is faiss's plain k-means. Both sides
    quantise with the IVF quantiser by default, so the map and the on-board queries assign words
    with the same (fast) function. Bags of further feature kinds (:mod:`geoloc_ros.bovw.kinds`) are
    configured in ``others``; a bag without a config gets its kind's ``map_words``.
    """

    sift: VocabularyConfig = Field(default_factory=lambda: _map_vocabulary(30_000))
    mser: VocabularyConfig = Field(default_factory=lambda: _map_vocabulary(8_000))
    others: dict[str, VocabularyConfig] = Field(
        default_factory=dict, description="vocabularies of the bags of further feature kinds, by kind name"
    )
    training: Literal["two_level", "flat"] = "two_level"
    min_descriptors_per_word: int = Field(
        20,
        ge=1,
        description="a bag with fewer sampled descriptors per word gets fewer words (logged), so that "
        "small maps (tests, a single street) still build",
    )

    @model_serializer(mode="wrap")
    def _omit_no_others(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # As FeatureConfig.kinds: stored build configs of SIFT + MSER maps stay as they were.
        data: dict[str, Any] = handler(self)
        if not self.others:
            data.pop("others", None)
        return data

    def by_bag(self, names: Iterable[str]) -> dict[str, VocabularyConfig]:
        """The vocabulary config of each bag of ``names`` (feature kind names)."""
        configured = {"sift": self.sift, "mser": self.mser, **self.others}
        return {
            name: configured[name] if name in configured else _map_vocabulary(feature_kind(name).map_words)
            for name in names
        }


class PointsConfig(StrictModel):
    """How each keypoint gets its 3D map point from the view's depth."""

    max_depth_step: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="the 2x2 depth pixels around a keypoint must agree to this fraction, else the "
        "keypoint sits on a depth edge and gets no 3D point (NaN)",
    )
    mask_erode_px: int = Field(
        3, ge=0, le=32, description="features are detected this far from holes of virtual views"
    )


class MapCosimilarityConfig(CosimilarityConfig):
    """Co-similarity between reference views (``bovw.cosimilarity``) and how much of it to compute."""

    mode: Literal["auto", "all_pairs", "edges"] = Field(
        "auto",
        description="all_pairs: top-K over every pair (n_views^2); edges: only topological edges "
        "(linear); auto: all_pairs up to all_pairs_max_views views",
    )
    all_pairs_max_views: int = Field(20_000, ge=1)


class TopologyConfig(StrictModel):
    """The view graph: views of the same or of adjacent panoramas, with distances in metres."""

    adjacency_m: float = Field(
        30.0, ge=0.0, description="panoramas closer than this are adjacent (besides their links)"
    )
    use_links: bool = Field(True, description="panoramas linked in the panorama set are adjacent")
    rerank: RerankConfig = Field(default_factory=RerankConfig)


class TilesConfig(StrictModel):
    """Square geographic tiles of the map's ENU plane; every array is stored tile by tile."""

    tile_size_m: float = Field(250.0, gt=0.0, allow_inf_nan=False)


class ImagesConfig(StrictModel):
    """View images kept in the bundle (for PoseNet training and inspection)."""

    store: bool = True
    jpeg_quality: int = Field(90, ge=1, le=100)


class ParallelConfig(StrictModel):
    """Where the per-panorama work runs (overridden by ``--workers`` / ``--scheduler``)."""

    workers: int | None = Field(
        None, ge=1, description="local worker processes (default: all cores); 1 runs in this process"
    )
    tasks_in_flight_per_worker: int = Field(
        2, ge=1, description="submitted but unfinished panoramas per worker (bounds memory)"
    )


class PoseUncertaintyConfig(StrictModel):
    """The panoramas' pose uncertainty carried into the bundle (per panorama, for the localizers).

    A record's own ``position_sigma_m`` / ``heading_sigma_deg`` are kept; what it does not state comes
    from ``provider``'s documented default (``gis.panorama_set.PROVIDER_UNCERTAINTY``). The explicit
    fields override every record (a map-wide override, ``geoloc map build --pose-sigma M DEG``).
    """

    provider: Literal["exact", "streetview", "survey"] = Field(
        "exact", description="default for records that state nothing"
    )
    position_sigma_m: float | None = Field(None, ge=0.0, le=1000.0, allow_inf_nan=False)
    heading_sigma_deg: float | None = Field(None, ge=0.0, le=180.0, allow_inf_nan=False)


class MapBuildConfig(StrictModel):
    """Everything :func:`geoloc_ros.mapping.build.build_map` needs besides its inputs."""

    views: ViewSynthesisConfig = Field(default_factory=ViewSynthesisConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    points: PointsConfig = Field(default_factory=PointsConfig)
    vocabulary: VocabulariesConfig = Field(default_factory=VocabulariesConfig)
    index: IndexConfig = Field(
        default_factory=lambda: IndexConfig(tf_transform="sqrt"),
        description="sqrt term frequencies damp repeated structures (windows, trees of one texture)",
    )
    query: QueryConfig = Field(
        default_factory=lambda: QueryConfig(
            weights={name: feature_kind(name).map_weight for name in DEFAULT_FEATURE_KINDS}
        ),
        description="default retrieval settings of the bundle (bag weights also weight the co-similarity)",
    )
    cosimilarity: MapCosimilarityConfig = Field(default_factory=MapCosimilarityConfig)
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    tiles: TilesConfig = Field(default_factory=TilesConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    pose_uncertainty: PoseUncertaintyConfig = Field(default_factory=PoseUncertaintyConfig)
    seed: int = Field(0, ge=0, description="seed of the descriptor sample")

    @model_validator(mode="after")
    def _query_bags_exist(self) -> MapBuildConfig:
        # The default features.kinds are sift and mser: the default weights name both.
        unknown = set(self.query.weights) - {*self.features.kinds, *DEFAULT_FEATURE_KINDS}
        if unknown:
            raise ValueError(
                f"query.weights: unknown bag(s) {sorted(unknown)}; bags are the feature kinds "
                f"{self.features.kinds}"
            )
        return self

    def bag_names(self) -> tuple[str, ...]:
        """Bags the features produce: the enabled feature kinds, in order."""
        return self.features.enabled_kinds()
