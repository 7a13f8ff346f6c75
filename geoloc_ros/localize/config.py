"""Settings of the BoVW + PnP-RANSAC localizer (:class:`LocalizerConfig`), loadable from YAML.

``geoloc localize --config localize.yaml`` and the ``bovw_localizer`` node (as dotted ROS parameters,
``localizer.matching.ratio``) read the same model. Every section documents its knobs; the defaults
are the ones measured by bench/bench_localize.py on the simulator's ``standard`` scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from geoloc_ros.config import GateProbability, StrictModel, load_yaml


class QueryFeaturesConfig(StrictModel):
    """Query-frame features: the map's settings (``MapBundle.query_feature_config``) plus these caps."""

    fast: bool = Field(True, description="SIFT at half scale and fewer features (FeatureConfig.fast)")
    sift_max_features: int = Field(800, ge=50, le=10000, description="SIFT keypoints kept per frame")
    sift_scale: float = Field(0.5, gt=0.1, le=1.0, description="image scale SIFT runs at (fast only)")
    mser_when_tracking: bool = Field(
        False,
        description="also extract the on-demand feature kinds (MSER) while tracking (retrieval is skipped "
        "then, so they only add matches)",
    )


class RetrievalConfig(StrictModel):
    """Global re-localization: BoVW retrieval with both bags, then topological re-ranking."""

    top_k: int = Field(10, ge=1, le=100, description="candidate views verified geometrically")
    quantizer: Literal["flat", "ivf"] = Field("ivf", description="word assignment (ivf: faster, same words)")
    rerank: bool = Field(True, description="re-rank with the bundle's co-similarity and topology")
    shortlist: int = Field(30, ge=1, le=1000, description="retrieved views re-ranked to choose top_k")
    gps_radius_m: float = Field(
        40.0, gt=0.0, description="candidates within this radius of a GPS prior (plus gps_sigmas sigmas)"
    )
    gps_sigmas: float = Field(3.0, ge=0.0, description="GPS standard deviations added to gps_radius_m")
    paged_tiles: int | None = Field(
        None,
        ge=1,
        description="score retrieval around a prior from a tile-paged index holding this many tiles "
        "(bounded memory on city-scale bundles, mapping/paging.py); None: the whole index, memory-mapped",
    )
    prefetch_lookahead_s: float = Field(
        10.0,
        ge=0.0,
        description="with paged_tiles: after each frame a background thread loads the index tiles and "
        "reads ahead the feature rows around the vehicle and where it will be this many seconds ahead "
        "along its velocity (localize/prefetch.py); 0: no prefetch",
    )
    prefetch_radius_m: float = Field(
        60.0, gt=0.0, description="radius around the vehicle (and the point ahead) that prefetch covers"
    )


class TrackingConfig(StrictModel):
    """Work reuse between frames: while a recent pose exists, candidates come from the predicted
    camera (views that see what it sees) instead of global retrieval. The prediction is a Kalman
    motion prior over the accepted poses (localize/tracking.py; its vehicle dynamics below)."""

    enabled: bool = True
    max_candidates: int = Field(5, ge=1, le=50, description="views matched per tracked frame")
    search_radius_m: float = Field(45.0, gt=0.0, description="views considered around the predicted camera")
    max_prior_age_s: float = Field(1.0, gt=0.0, description="older poses are not used for prediction")
    max_failures: int = Field(
        3, ge=1, description="consecutive tracked frames without a pose before re-localizing globally"
    )
    min_view_score: float = Field(
        0.05, ge=0.0, le=1.0, description="co-visibility below this: not a candidate"
    )
    sample_points_per_view: int = Field(
        48, ge=4, le=1024, description="3D points per view used to predict co-visibility"
    )
    retry_with_on_demand: bool = Field(
        True,
        description="a tracked frame that fails without the on-demand feature kinds (MSER) is retried, "
        "still guided, with them before global retrieval",
    )
    retry_global: bool = Field(
        True, description="a tracked frame that fails is retried with global retrieval"
    )
    uncertain_map_candidates: int = Field(
        10,
        ge=1,
        le=50,
        description="views matched per tracked frame on a map whose panoramas state a pose uncertainty "
        "(instead of max_candidates: views of several panoramas average their errors out)",
    )
    min_panoramas: int = Field(
        3,
        ge=1,
        le=50,
        description="on a map whose panoramas state a pose uncertainty: the best view of each of this "
        "many panoramas comes first among the candidates (their errors then average out)",
    )
    acceleration_sigma_mps2: float = Field(
        2.0,
        gt=0.0,
        description="motion prior: white acceleration of the vehicle per axis (m/s^2; urban driving "
        "brakes and accelerates at up to 2-3); larger follows speed changes sooner, smaller weighs a "
        "single pose less against the track",
    )
    yaw_acceleration_sigma_radps2: float = Field(
        1.0,
        gt=0.0,
        description="motion prior: white yaw acceleration (rad/s^2; entering a turn reaches 0.5 rad/s "
        "within about a second)",
    )
    initial_speed_sigma_mps: float = Field(
        15.0, gt=0.0, description="motion prior: velocity uncertainty per axis at a track's first pose"
    )
    innovation_gate_probability: GateProbability = Field(
        0.999,
        description="motion prior: chi-square probability of a pose's innovation beyond which it counts "
        "as a pose on the gate (its covariance scaled up)",
    )
    max_gated_updates: int = Field(
        5, ge=1, description="motion prior: poses beyond the gate in a row after which the track restarts"
    )


class MatchingConfig(StrictModel):
    """Descriptor matching of the query against each candidate view (SIFT with SIFT, MSER with MSER)."""

    ratio: float = Field(0.85, gt=0.0, le=1.0, description="Lowe's ratio test, within one view")
    mutual: bool = Field(True, description="keep only mutual nearest neighbours")
    cache_views: int = Field(256, ge=1, description="views whose descriptors stay cached as float32")
    guided_radius_px: float = Field(
        16.0, gt=0.0, description="tracking: search radius around a point's predicted projection"
    )
    guided_max_distance: float = Field(
        0.7,
        gt=0.0,
        le=2.0,
        description="tracking: largest descriptor distance (fraction of the RootSIFT norm) of a match "
        "that is alone in its window (any ratio test passes a lone candidate)",
    )
    guided_radius_growth_px_per_s: float = Field(
        200.0, ge=0.0, description="tracking: radius added per second of prediction age beyond one frame"
    )


class PoseConfig(StrictModel):
    """PnP-RANSAC on the pooled 2D-3D matches, non-linear refinement, and the essential-matrix fallback."""

    backend: Literal["poselib", "opencv"] = Field(
        "poselib", description="poselib LO-RANSAC, or OpenCV solvePnPRansac with USAC_MAGSAC"
    )
    reprojection_threshold_px: float = Field(4.0, gt=0.0, description="RANSAC inlier threshold")
    max_iterations: int = Field(5000, ge=10)
    min_iterations: int = Field(50, ge=1)
    confidence: float = Field(0.9999, gt=0.0, lt=1.0)
    seed: int = Field(0, ge=0, description="RANSAC seed (results are deterministic)")
    refine_iterations: int = Field(10, ge=1, le=100, description="Gauss-Newton steps of the refinement")
    huber_px: float = Field(2.0, gt=0.0, description="robust weight threshold of the refinement")
    combine_panoramas: bool = Field(
        True,
        description="on a map whose panoramas state a pose uncertainty: the pose combines each "
        "panorama's own pose, weighted by its pixel and map covariance (localize/combine.py)",
    )
    essential_fallback: bool = Field(True, description="views without depth: relative pose + triangulation")
    essential_min_inliers: int = Field(20, ge=8, description="inliers of one view's essential matrix")
    essential_max_iterations: int = Field(1000, ge=10, description="RANSAC iterations per view (fallback)")
    essential_threshold_px: float = Field(2.0, gt=0.0, description="epipolar inlier threshold")
    essential_max_rotation_spread_deg: float = Field(
        2.0, gt=0.0, description="fallback: the views' rotations of the query must agree this well"
    )

    @model_validator(mode="after")
    def _iterations(self) -> PoseConfig:
        if self.min_iterations > self.max_iterations:
            raise ValueError(
                f"min_iterations ({self.min_iterations}) > max_iterations ({self.max_iterations})"
            )
        return self


class RejectionConfig(StrictModel):
    """When no pose is better than a wrong one."""

    min_inliers: int = Field(25, ge=6, description="PnP inliers (distinct query keypoints)")
    min_inlier_ratio: float = Field(
        0.15, ge=0.0, le=1.0, description="inliers / matches of the views that support the pose"
    )
    ambiguity_ratio: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="a second pose with this share of the inliers makes the frame ambiguous",
    )
    ambiguity_distance_m: float = Field(2.0, gt=0.0, description="poses closer than this are the same")
    max_roll_deg: float = Field(10.0, gt=0.0, le=90.0, description="base_link roll")
    max_pitch_deg: float = Field(10.0, gt=0.0, le=90.0, description="base_link pitch")
    min_height_m: float = Field(-1.0, description="base_link height above the ground of the supporting views")
    max_height_m: float = Field(5.0, description="base_link height above the ground of the supporting views")
    max_jump_m: float = Field(
        3.0, gt=0.0, description="distance from the tracked prediction, plus speed slack"
    )
    max_speed_mps: float = Field(40.0, gt=0.0, description="slack of the jump gate per second of prior age")
    reacquire_horizon_s: float = Field(
        30.0,
        ge=0.0,
        description="after tracking is lost, a global pose farther from the last accepted one than "
        "max_jump_m + max_speed_mps x its age (+3 sigma) is rejected, for this long (0: never)",
    )
    coarse_depth_global_min_inliers: int = Field(
        30,
        ge=6,
        description="a pose found by global re-localization after tracking was lost (within "
        "reacquire_horizon_s; no tracked prediction, so no jump gate) whose inliers rest mostly on "
        "plane-model depth needs this many: on the realistic drive's "
        "anchored map no plane-depth PnP solution with 30 or more inliers was off by more than the "
        "jump gate's 3 m, 1.2 % with 25-29 and 2.3 % with 20-24 were (exact depth: none with 20 or "
        "more; BENCHMARKS.md, issue 13 fourth stop); min_inliers still applies to every pose",
    )
    max_position_sigma_m: float = Field(
        2.0,
        gt=0.0,
        description="a pose whose published horizontal standard deviation (worst axis) exceeds this is "
        "no pose: it adds little beside consumer GPS (on imperfect maps: essential-matrix fixes from "
        "nearly parallel bearings)",
    )
    gps_gate_sigmas: float = Field(
        5.0,
        gt=0.0,
        description="a pose farther than this many GPS sigmas (plus 5 m) from a GPS prior is rejected",
    )

    @model_validator(mode="after")
    def _heights(self) -> RejectionConfig:
        if self.min_height_m >= self.max_height_m:
            raise ValueError(
                f"min_height_m ({self.min_height_m}) must be < max_height_m ({self.max_height_m})"
            )
        return self


class DepthErrorConfig(StrictModel):
    """Error of a map point's depth along its bearing from its panorama, as a standard deviation
    relative to the range, by the panorama's depth model (``PanoramaRecord.has_plane_depth`` /
    ``has_depth``); propagated into the pose covariance
    (:func:`~geoloc_ros.localize.covariance.depth_covariance`). A panorama without depth has no map
    points."""

    exact_relative_sigma: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="a measured range image (png_mm): its error is below the pixel noise the "
        "refinement already estimates",
    )
    plane_relative_sigma: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="a Street View plane model (depth_gsv or the streetview format): cars, poles and "
        "trees get the façade behind them, gaps the façade beside them (measured against RTK on the "
        "realistic drive: BENCHMARKS.md, issue 13 fourth stop)",
    )


class CovarianceConfig(StrictModel):
    """Covariance = scale² · σ̂²(JᵀWJ)⁻¹ of the refinement, inflated where evidence is weak (see
    :mod:`geoloc_ros.localize.covariance`). ``scale`` is calibrated on the ``standard`` scenario."""

    scale: float = Field(0.75, gt=0.0, description="calibration factor on standard deviations")
    min_sigma_px: float = Field(0.5, gt=0.0, description="floor of the estimated reprojection noise")
    reference_inliers: int = Field(
        100, ge=1, description="inflation 1 + (reference_inliers / inliers)²: few inliers, weak evidence"
    )
    reference_inlier_ratio: float = Field(
        0.25, ge=0.0, le=1.0, description="inflation max(1, reference_inlier_ratio / inlier ratio)"
    )
    reference_views: int = Field(
        4, ge=1, description="inflation 1 + (reference_views - 1) / views when under two views solve alone"
    )
    min_position_sigma_m: float = Field(0.02, ge=0.0, description="floor: map georeferencing and model error")
    min_yaw_sigma_deg: float = Field(0.1, ge=0.0, description="floor: heading of the map's panoramas")
    essential_bearing_sigma_deg: float = Field(1.0, gt=0.0, description="bearing noise of the fallback")
    map_uncertainty: bool = Field(
        True, description="propagate each panorama's stated pose uncertainty into the covariance"
    )
    plane_depth_sigma_m: float = Field(
        0.05,
        ge=0.0,
        description="on a map that states a pose uncertainty, a panorama whose depth is a plane model "
        "(Street View planes) gets this sigma added in quadrature to its stated position sigma: the "
        "model's depth error moves its points together, as an error of its pose does",
    )
    map_correlation: float = Field(
        0.5, ge=0.0, le=1.0, description="correlation of the pose errors of the panoramas of one frame"
    )
    depth_error: DepthErrorConfig = Field(
        default_factory=DepthErrorConfig,
        description="the map points' depth error by depth model, propagated into the covariance",
    )
    panorama_gate_probability: GateProbability = Field(
        0.999,
        description="a panorama whose own pose disagrees with the others' beyond this chi² quantile "
        "(its pixel and map uncertainty included) is rejected",
    )


class OffsetsConfig(StrictModel):
    """On a map whose panoramas state a pose uncertainty: each panorama's pose error, learned online
    from the frames that solve several panoramas alone and taken out of later poses
    (:mod:`geoloc_ros.localize.offsets`)."""

    enabled: bool = Field(True, description="learn the panoramas' relative errors and correct the poses")
    measurement_inflation: float = Field(
        3.0,
        ge=1.0,
        description="the learning counts one frame's pixel noise this many times over (consecutive "
        "frames see the same points: their errors are not independent)",
    )
    gate_probability: GateProbability = Field(
        0.999,
        description="a frame whose panoramas disagree with what was learned beyond this chi² quantile "
        "contradicts it (see contradiction_decay); one that disagrees beyond it even with the prior "
        "teaches nothing and has its covariance widened by the disagreement",
    )
    max_panoramas: int = Field(
        100, ge=2, le=10000, description="panoramas held in the state; the least recently seen are forgotten"
    )
    relearn_distance_m: float | None = Field(
        200.0,
        gt=0.0,
        description="a learned error's variance returns to the prior over this distance travelled "
        "(what a panorama's points say changes with the viewpoint); None: learned errors stay",
    )
    contradiction_decay: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="a frame whose panoramas disagree with what was learned beyond the gate moves "
        "their learned errors' variance this fraction of the way back to the prior, again until it "
        "agrees or the prior is reached (0: a disagreeing frame is only gated out)",
    )


class LocalizerConfig(StrictModel):
    features: QueryFeaturesConfig = Field(default_factory=QueryFeaturesConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    pose: PoseConfig = Field(default_factory=PoseConfig)
    rejection: RejectionConfig = Field(default_factory=RejectionConfig)
    covariance: CovarianceConfig = Field(default_factory=CovarianceConfig)
    offsets: OffsetsConfig = Field(default_factory=OffsetsConfig)


def load_localizer_config(path: str | Path | None) -> LocalizerConfig:
    """The config of ``path`` (YAML; errors name the file and field), or the defaults for ``None``."""
    return LocalizerConfig() if path is None else load_yaml(path, LocalizerConfig)
