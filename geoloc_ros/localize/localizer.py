"""The BoVW + PnP-RANSAC localizer: one query frame in, one ``base_link`` pose with covariance (or none) out.

Per frame (:meth:`Localizer.localize_frame`):

1. **Candidates** (:mod:`geoloc_ros.localize.candidates`): while tracking, the views that see what
   the predicted camera sees; otherwise BoVW retrieval with both bags (SIFT and MSER words),
   optionally among the views around a GPS prior, re-ranked with the co-similarity and topology.
2. **Matching** (:mod:`geoloc_ros.localize.matching`): ratio test and mutual nearest neighbour,
   view by view; while tracking, only around the points' predicted projections.
3. **PnP-RANSAC** on the pooled 2D-3D matches of all candidates. They all live in the ``map`` frame,
   so one robust problem finds the pose most views agree on: a consensus across candidates, with
   the views that support it recorded. Then the non-linear refinement and its covariance
   (:mod:`geoloc_ros.localize.pose`, :mod:`geoloc_ros.localize.covariance`). On a map whose
   panoramas state a pose uncertainty, a panorama whose own pose disagrees with the others beyond
   its pixel + map uncertainty is dropped and the pose re-solved, and each panorama's stated
   uncertainty is propagated into the covariance (on any map, so is each map point's depth error
   by its panorama's depth model: ``covariance.depth_error``); where two or more panoramas can be
   solved alone, the pose is their generalised least-squares combination
   (:mod:`geoloc_ros.localize.combine`), so that their independent errors average out (tracking
   puts views of several panoramas first);
   with ``offsets.enabled`` each panorama's error relative to the others is learned from such
   frames and taken out of every later pose (:mod:`geoloc_ros.localize.offsets`).
   Without enough depth, the essential-matrix
   fallback intersects the bearings of several views, if they agree.
4. **Rejection**: too few inliers, a low inlier ratio, a second pose with comparable support among
   the other matches (ambiguous: inconsistent candidates; global matching only, since guided
   matches all lie near the prediction), an implausible attitude or height, a jump from the
   tracked prediction (or, after tracking was lost, beyond driving distance of the last pose, or
   resting mostly on plane-model depth with fewer than ``rejection.coarse_depth_global_min_inliers``),
   far from the GPS prior, or a horizontal standard deviation beyond
   ``rejection.max_position_sigma_m``: no pose rather than a wrong or vague one.
5. The pose of ``base_link``: ``T_map_base = T_map_optical · T_base_optical⁻¹`` (camera mounting).

A tracked frame that fails is retried at once: first still guided, with the on-demand feature kinds
(MSER) if it was tried without them (``tracking.retry_with_on_demand``), then with global retrieval
(plus the tracked views, matched brute force); tracking is lost after ``tracking.max_failures``
frames without a pose.

After each frame, with a tile-paged index (``retrieval.paged_tiles``, city-scale bundles), a
background thread prefetches the map tiles around the vehicle and ahead of it along its tracked
velocity (:mod:`geoloc_ros.localize.prefetch`); the frame path does not wait for it.

ROS-free. Not thread-safe: one localizer per thread of frames; :meth:`Localizer.new_preparer` gives
another thread its own feature extractor for pipelining (see :mod:`geoloc_ros.pipelines.localize_drive`).

**Why one module of ~600 lines.** :class:`Localizer` is the per-frame state machine (tracking,
retrieval fallback, rejection); the stages it calls live in their own modules (candidates,
matching, pose, covariance, tracking).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import chi2

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geo.enu import GeoOrigin, geodetic_to_enu
from geoloc_ros.geometry.covariance import validate_covariance, worst_horizontal_sigma
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.geometry.sources import SOURCE_BOVW
from geoloc_ros.localize.candidates import (
    Candidates,
    CovisibilityModel,
    retrieve_candidates,
    tracking_candidates,
)
from geoloc_ros.localize.combine import PanoramaSolution, combine_panorama_solutions
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.localize.covariance import (
    ViewSolution,
    base_covariance,
    between_view_covariance,
    camera_covariance,
    depth_covariance,
    depth_relative_sigmas,
    map_covariance,
    map_sensitivities,
    panorama_pose_sigmas,
    pose_deviation,
    with_floor,
)
from geoloc_ros.localize.errors import LocalizerSetupError
from geoloc_ros.localize.matching import Matches, ViewCache, match_guided, match_views
from geoloc_ros.localize.offsets import OffsetObservation, PanoramaOffsets
from geoloc_ros.localize.pose import (
    RefinedPose,
    RelativePose,
    intersect_bearings,
    mean_rotation,
    pnp_ransac,
    refine_pose,
    relative_pose,
    rotation_from_vector,
    vector_from_rotation,
)
from geoloc_ros.localize.prefetch import MapPrefetcher
from geoloc_ros.localize.query import QueryFrame, QueryPreparer, query_feature_config
from geoloc_ros.localize.tracking import MotionTracker, Prediction, ypr_of
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.paging import TilePagedIndex

logger = logging.getLogger(__name__)

# A view needs this many inliers to be solved alone (for the between-view covariance).
_MIN_VIEW_INLIERS = 12
# A view whose own pose lies farther than this from the joint one is too weak to count.
_MAX_VIEW_DEVIATION_M = 20.0
# Camera height above the ground assumed for panoramas whose record does not say.
_DEFAULT_CAPTURE_HEIGHT_M = 2.5
# RANSAC iterations spent looking for a second, competing pose among the outliers.
_AMBIGUITY_ITERATIONS = 1000


def _own_solution(refined: RefinedPose, rows: np.ndarray) -> RefinedPose:
    """The refinement's per-correspondence arrays restricted to ``rows``, with unit weights: the
    rows' own solution fits them (the joint solution's robust weights would discount a panorama for
    disagreeing, and so hide the disagreement)."""
    return RefinedPose(
        refined.pose,
        refined.covariance,
        refined.sigma_px,
        refined.residuals_px[rows],
        refined.in_front[rows],
        refined.jacobian[rows],
        refined.residuals[rows],
        np.ones(len(rows)),
    )


# Guided matching's search radius grows only for predictions older than one frame at 20 Hz.
_NOMINAL_FRAME_AGE_S = 0.05

STATUS_LOCALIZED = "localized"
# A frame stamped at or at most this much before the last pose is a duplicate or a reordered message:
# refused (STATUS_OUT_OF_ORDER), the track kept. Further back, time itself went back (a bag loop):
# tracking restarts and the frame is localized.
MAX_REORDER_NS = 2_000_000_000
STATUS_OUT_OF_ORDER = "out_of_order"
# PnP failures after which the essential-matrix fallback is tried (not rejections of a found pose).
_FALLBACK_STATUSES = frozenset({"too_few_matches", "ransac_failed", "too_few_inliers"})


@dataclass(frozen=True)
class PositionPrior:
    """A position in ``map`` with its 2x2 covariance (a consumer GPS fix)."""

    stamp_ns: int
    xy: np.ndarray
    covariance: np.ndarray

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=float).reshape(-1)
        if xy.size != 2 or not np.all(np.isfinite(xy)):
            raise LocalizerSetupError(f"position prior must be a finite (x, y), got {xy.tolist()}")
        try:
            cov = validate_covariance(self.covariance, 2, "position prior covariance")
        except ValueError as exc:
            raise LocalizerSetupError(str(exc)) from None
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "covariance", cov)

    @classmethod
    def from_geodetic(
        cls,
        stamp_ns: int,
        latitude_deg: float,
        longitude_deg: float,
        altitude_m: float,
        covariance_enu: np.ndarray,
        origin: GeoOrigin,
    ) -> PositionPrior:
        """From a NavSatFix-like fix (``covariance_enu``: its 3x3 ENU position covariance, m²)."""
        enu = geodetic_to_enu(latitude_deg, longitude_deg, altitude_m, origin).reshape(3)
        cov = np.asarray(covariance_enu, dtype=float).reshape(3, 3)[:2, :2]
        return cls(int(stamp_ns), enu[:2], cov)

    @property
    def sigma_m(self) -> float:
        """Standard deviation along the worst axis."""
        return worst_horizontal_sigma(self.covariance)


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds spent on each stage of one frame (monotonic clock)."""

    features_ms: float = 0.0
    retrieval_ms: float = 0.0  # candidate selection: retrieval or co-visibility
    matching_ms: float = 0.0
    ransac_ms: float = 0.0  # PnP-RANSAC, refinement, covariance, checks (and the fallback)
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "features": round(self.features_ms, 3),
            "retrieval": round(self.retrieval_ms, 3),
            "matching": round(self.matching_ms, 3),
            "ransac": round(self.ransac_ms, 3),
            "total": round(self.total_ms, 3),
        }


@dataclass(frozen=True)
class LocalizationResult:
    """What one frame gave: an estimate, or the reason there is none (``status``)."""

    stamp_ns: int
    estimate: PoseEstimate | None
    status: str
    mode: str  # "tracking", "global" or "none"
    candidates: np.ndarray
    support: dict[int, int] = field(default_factory=dict)  # view -> inliers
    n_matches: int = 0
    n_inliers: int = 0
    timings: StageTimings = StageTimings()

    @property
    def localized(self) -> bool:
        return self.estimate is not None


@dataclass
class _Attempt:
    """The outcome of one candidate set (one mode) inside a frame."""

    candidates: Candidates
    status: str
    estimate: PoseEstimate | None = None
    support: dict[int, int] = field(default_factory=dict)
    n_matches: int = 0
    n_inliers: int = 0
    retrieval_ms: float = 0.0
    matching_ms: float = 0.0
    ransac_ms: float = 0.0
    extra_features_ms: float = 0.0
    offsets_update: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class _Solved:
    camera_pose: Pose3D  # T_map_optical
    covariance: np.ndarray  # 6x6 camera (centre, rotation about map axes), calibrated and inflated
    support: dict[int, int]
    n_inliers: int
    info: dict[str, Any]
    # What the panoramas' learned errors take from this frame once its pose is accepted.
    offsets_update: tuple[np.ndarray, np.ndarray] | None = None


class Localizer:
    """Holds the map and the state between frames (see the module docstring)."""

    def __init__(
        self,
        bundle: MapBundle,
        config: LocalizerConfig | None = None,
        mounting: CameraMounting | None = None,
        input_camera: PinholeCamera | None = None,
    ) -> None:
        self.bundle = bundle
        self.config = config if config is not None else LocalizerConfig()
        if bundle.n_views == 0:
            raise LocalizerSetupError(f"{bundle.path}: the map bundle has no views")
        self.camera = bundle.camera
        self.mounting = mounting if mounting is not None else CameraMounting()
        self.t_base_optical = self.mounting.base_to_optical()
        self.t_optical_base = self.t_base_optical.inverse()
        self.feature_config = query_feature_config(
            bundle.query_feature_config(self.config.features.fast), self.config.features
        )
        self.preparer = QueryPreparer(self.camera, self.feature_config, input_camera)
        # Create the lazily loaded members now: they are not thread-safe to create later.
        self.retriever = bundle.retriever(
            quantizer=self.config.retrieval.quantizer, paged_tiles=self.config.retrieval.paged_tiles
        )
        self.support_graph = bundle.support_graph() if self.config.retrieval.rerank else None
        bundle.feature_columns  # noqa: B018 (created now, before other threads read features)
        self.cache = ViewCache(bundle, self.config.matching.cache_views)
        self.covisibility = (
            CovisibilityModel(bundle, self.config.tracking.sample_points_per_view)
            if self.config.tracking.enabled
            else None
        )
        self.tracker = MotionTracker(self.config.tracking)
        self.ground_z = self._view_ground_heights()
        # The map's own uncertainty: each view's panorama, the panoramas' stated centres and sigmas.
        self.view_panorama = np.asarray(bundle.views.pano_index, dtype=np.int64)
        self.panorama_centres = np.asarray(bundle.panorama_positions, dtype=float)
        self.depth_sigma = depth_relative_sigmas(bundle.panorama_records, self.config.covariance)
        self.plane_depth = np.array([r.has_plane_depth for r in bundle.panorama_records], dtype=bool)
        self.panorama_sigma_m, self.panorama_sigma_rad, self.map_is_uncertain = panorama_pose_sigmas(
            bundle.panorama_records, self.config.covariance
        )
        # The panoramas' errors learned from the frames that see several (kept across tracking losses:
        # they belong to the map, not to the track).
        self.offsets = (
            PanoramaOffsets(
                self.panorama_sigma_m,
                self.panorama_sigma_rad,
                self.config.covariance.map_correlation,
                self.config.offsets,
            )
            if self.map_is_uncertain and self.config.offsets.enabled
            else None
        )
        self._offsets_position: np.ndarray | None = None  # where the learned errors were last moved on
        retrieval = self.config.retrieval
        index = self.retriever.index
        self.prefetcher = (
            MapPrefetcher(bundle, index, retrieval.prefetch_radius_m, retrieval.prefetch_lookahead_s)
            if isinstance(index, TilePagedIndex) and retrieval.prefetch_lookahead_s > 0
            else None
        )

    def close(self) -> None:
        """Stop the prefetch thread (if any); the localizer still works, without prefetch."""
        if self.prefetcher is not None:
            self.prefetcher.close()
            self.prefetcher = None

    def set_base_to_optical(self, t_base_optical: Pose3D) -> None:
        """Use another camera mounting ``T_base_optical`` (e.g. from TF) from the next frame on."""
        self.t_base_optical = t_base_optical
        self.t_optical_base = t_base_optical.inverse()

    def _view_ground_heights(self) -> np.ndarray:
        """Ground height under every view: its camera height minus its panorama's capture height."""
        heights = np.array(
            [
                r.camera_height_m if r.camera_height_m is not None else _DEFAULT_CAPTURE_HEIGHT_M
                for r in self.bundle.panorama_records
            ],
            dtype=float,
        )
        views = self.bundle.views
        return np.asarray(views.position[:, 2], dtype=float) - heights[np.asarray(views.pano_index)]

    # ------------------------------------------------------------------------------ frames
    def new_preparer(self) -> QueryPreparer:
        """A query preparer for another thread (same camera models and feature settings)."""
        return QueryPreparer(self.camera, self.feature_config, self.preparer.input_camera)

    def set_input_camera(self, camera: PinholeCamera) -> None:
        self.preparer.set_input_camera(camera)

    def prediction(self, stamp_ns: int) -> Prediction | None:
        return self.tracker.predict(stamp_ns) if self.config.tracking.enabled else None

    def wants_on_demand(self, stamp_ns: int) -> bool:
        """Whether a frame at ``stamp_ns`` will need the on-demand kinds (MSER; for global retrieval)."""
        return self.config.features.mser_when_tracking or self.prediction(stamp_ns) is None

    def reset(self) -> None:
        """Forget the track (e.g. after time jumped backwards)."""
        self.tracker.reset()

    def localize(
        self, image: np.ndarray, stamp_ns: int, gps_prior: PositionPrior | None = None
    ) -> LocalizationResult:
        """Rectify, extract features and localize one frame (BGR or grey, in the input camera)."""
        frame = self.preparer.prepare(image, stamp_ns, with_on_demand=self.wants_on_demand(stamp_ns))
        return self.localize_frame(frame, gps_prior)

    def localize_frame(self, frame: QueryFrame, gps_prior: PositionPrior | None = None) -> LocalizationResult:
        """Localize a prepared frame (see the module docstring) and update the track. A frame stamped at
        or up to ``MAX_REORDER_NS`` before the last pose (a duplicate or reordered message) is refused
        with ``STATUS_OUT_OF_ORDER`` and the track kept; further back (a bag loop) tracking restarts."""
        start = time.perf_counter()
        prepared_ms = frame.features_ms  # MSER extracted below is counted by the attempt that needed it
        stamp = frame.stamp_ns
        last = self.tracker.last_stamp_ns
        if last is not None and last - MAX_REORDER_NS <= stamp <= last:
            logger.debug(
                "frame stamp %d is not after the last pose's %d: refused, tracking kept", stamp, last
            )
            return LocalizationResult(stamp, None, STATUS_OUT_OF_ORDER, "none", np.zeros(0, np.int64))
        if last is not None and stamp < last:
            logger.info(
                "frame stamp %d is %.1f s before the last pose's: tracking restarts",
                stamp,
                (last - stamp) * 1e-9,
            )
            self.tracker.reset()
        prediction = self.prediction(stamp)
        attempts: list[_Attempt] = []
        if prediction is not None:
            # Whether a frame arrives with MSER depends on who prepared it when (pipelining): tracking
            # uses exactly the configured features so that results never do.
            tracked = frame if self.config.features.mser_when_tracking else frame.without_on_demand()
            attempts.append(self._attempt_tracking(tracked, prediction, gps_prior))
            if (
                attempts[-1].estimate is None
                and not tracked.has_on_demand
                and self.config.tracking.retry_with_on_demand
            ):
                # Still guided by the prediction, with every feature kind: far cheaper and surer
                # than matching the same views brute force (the map may have no on-demand kind).
                frame, extra_ms = self._with_on_demand(frame)
                if frame.has_on_demand:
                    attempt = self._attempt_tracking(frame, prediction, gps_prior)
                    attempt.extra_features_ms = extra_ms
                    attempts.append(attempt)
                else:
                    attempts[-1].extra_features_ms += extra_ms
        if not attempts or (attempts[-1].estimate is None and self.config.tracking.retry_global):
            frame, extra_ms = self._with_on_demand(frame)
            tracked_views = attempts[0].candidates.views if attempts else np.zeros(0, np.int64)
            attempt = self._attempt_global(frame, prediction, gps_prior, tracked_views)
            attempt.extra_features_ms = extra_ms
            attempts.append(attempt)
        final = attempts[-1]
        if final.estimate is not None:
            self.tracker.accept(stamp, final.estimate.pose, final.estimate.covariance)
            if self.offsets is not None:
                self._learn_offsets(final)
        else:
            self.tracker.miss()
        if self.prefetcher is not None:
            # Where the next frames will need the map: the vehicle (or the GPS prior) and ahead of it.
            if final.estimate is not None:
                self.prefetcher.request(final.estimate.pose.translation[:2], self.tracker.velocity_xy)
            elif gps_prior is not None:
                self.prefetcher.request(gps_prior.xy)
        timings = StageTimings(
            features_ms=prepared_ms + sum(a.extra_features_ms for a in attempts),
            retrieval_ms=sum(a.retrieval_ms for a in attempts),
            matching_ms=sum(a.matching_ms for a in attempts),
            ransac_ms=sum(a.ransac_ms for a in attempts),
            total_ms=prepared_ms + (time.perf_counter() - start) * 1e3,
        )
        estimate = final.estimate
        if estimate is not None:
            estimate.info["timings_ms"] = timings.as_dict()
        return LocalizationResult(
            stamp_ns=stamp,
            estimate=estimate,
            status=final.status,
            mode=final.candidates.mode,
            candidates=final.candidates.views,
            support=final.support,
            n_matches=final.n_matches,
            n_inliers=final.n_inliers,
            timings=timings,
        )

    def _with_on_demand(self, frame: QueryFrame) -> tuple[QueryFrame, float]:
        if frame.has_on_demand:
            return frame, 0.0
        before = frame.features_ms
        frame = self.preparer.add_on_demand(frame)
        return frame, frame.features_ms - before

    # ------------------------------------------------------------------------------ candidates
    def _attempt_tracking(
        self, frame: QueryFrame, prediction: Prediction, gps_prior: PositionPrior | None
    ) -> _Attempt:
        assert self.covisibility is not None
        start = time.perf_counter()
        cfg = self.config.tracking
        candidates = tracking_candidates(
            self.covisibility,
            self.bundle,
            prediction.pose.compose(self.t_base_optical),
            self.camera,
            cfg.search_radius_m,
            cfg.uncertain_map_candidates if self.map_is_uncertain else cfg.max_candidates,
            cfg.min_view_score,
            self.view_panorama if self.map_is_uncertain else None,
            cfg.min_panoramas,
        )
        elapsed = (time.perf_counter() - start) * 1e3
        attempt = self._verify(frame, candidates, prediction, gps_prior, guided=True)
        attempt.retrieval_ms += elapsed
        return attempt

    def _attempt_global(
        self,
        frame: QueryFrame,
        prediction: Prediction | None,
        gps_prior: PositionPrior | None,
        tracked_views: np.ndarray,
    ) -> _Attempt:
        """Retrieval candidates, matched brute force. After a failed tracked attempt its views are
        kept first: the prediction still says where the vehicle is, only its matches were too few."""
        start = time.perf_counter()
        cfg = self.config.retrieval
        subset = None
        if gps_prior is not None:
            radius = cfg.gps_radius_m + cfg.gps_sigmas * gps_prior.sigma_m
            subset = self.bundle.views_near(gps_prior.xy, radius)
        candidates = retrieve_candidates(
            self.retriever, self.support_graph, frame.features, cfg, self.bundle.n_views, subset
        )
        if len(tracked_views):
            retrieved = ~np.isin(candidates.views, tracked_views)
            candidates = Candidates(
                np.concatenate([tracked_views, candidates.views[retrieved]]),
                np.concatenate([np.zeros(len(tracked_views), np.float32), candidates.scores[retrieved]]),
                candidates.mode,
            )
        elapsed = (time.perf_counter() - start) * 1e3
        attempt = self._verify(frame, candidates, prediction, gps_prior)
        attempt.retrieval_ms += elapsed
        return attempt

    # ------------------------------------------------------------------------------ verification
    def _verify(
        self,
        frame: QueryFrame,
        candidates: Candidates,
        prediction: Prediction | None,
        gps_prior: PositionPrior | None,
        guided: bool = False,
    ) -> _Attempt:
        """Match, solve and check one candidate set; ``guided`` matches around the predicted pose."""
        if len(candidates.views) == 0:
            return _Attempt(candidates, "no_candidates")
        if len(frame.features) == 0:
            return _Attempt(candidates, "no_features")
        start = time.perf_counter()
        views = [self.cache.get(int(v)) for v in candidates.views]
        if guided and prediction is not None:
            cfg = self.config.matching
            late_s = max(prediction.age_s - _NOMINAL_FRAME_AGE_S, 0.0)
            radius = cfg.guided_radius_px + cfg.guided_radius_growth_px_per_s * late_s
            predicted_camera = prediction.pose.compose(self.t_base_optical)
            guess: Pose3D | list[Pose3D] = predicted_camera
            if self.offsets is not None:
                # Each panorama's points are where its learned error put them: look for them there.
                guess = [self._in_panorama_frame(predicted_camera, int(v)) for v in candidates.views]
            matches = match_guided(frame, views, guess, self.camera, radius, cfg)
        else:
            matches = match_views(frame, views, self.config.matching)
        matched = time.perf_counter()
        attempt = _Attempt(candidates, "too_few_matches", n_matches=len(matches))
        attempt.matching_ms = (matched - start) * 1e3
        # Guided matches all lie near the predicted pose: a competing pose cannot hide among them.
        solved, status = self._solve_pnp(matches, check_ambiguity=not guided)
        if solved is None and self.config.pose.essential_fallback and status in _FALLBACK_STATUSES:
            fallback = self._solve_essential(matches)
            if fallback is not None:
                solved, status = fallback, STATUS_LOCALIZED
        if solved is not None:
            attempt.support = solved.support
            attempt.n_inliers = solved.n_inliers
            estimate, status = self._accept(frame.stamp_ns, solved, candidates, prediction, gps_prior)
            attempt.estimate = estimate
            attempt.offsets_update = solved.offsets_update
        attempt.status = status
        attempt.ransac_ms = (time.perf_counter() - matched) * 1e3
        logger.debug(
            "frame %d %s: %d candidates %s, %d matches (%d with depth), %d inliers: %s",
            frame.stamp_ns,
            candidates.mode,
            len(candidates.views),
            candidates.views.tolist(),
            len(matches),
            int(np.count_nonzero(matches.has_point)),
            attempt.n_inliers,
            status,
        )
        return attempt

    def _distinct(self, matches: Matches, rows: np.ndarray) -> np.ndarray:
        """One correspondence per query keypoint (its most distinctive among ``rows``): a pixel
        matched in several views is one measurement, not several."""
        order = rows[np.argsort(matches.distance_ratio[rows], kind="stable")]
        _, first = np.unique(matches.query_index[order], return_index=True)
        return order[np.sort(first)]

    def _refine_pose(self, matches: Matches, start: Pose3D, rows: np.ndarray) -> RefinedPose:
        """The non-linear refinement from ``start`` on the correspondences ``rows``."""
        cfg = self.config.pose
        return refine_pose(
            start,
            matches.query_xy[rows],
            matches.points_map[rows],
            self.camera,
            cfg.refine_iterations,
            cfg.huber_px,
            self.config.covariance.min_sigma_px,
        )

    def _refine(self, matches: Matches, start: Pose3D, rows: np.ndarray) -> tuple[np.ndarray, RefinedPose]:
        """Refine from ``start`` on ``rows``; rows beyond the RANSAC threshold (or behind the camera)
        at the solution are dropped and the pose refined again on the others."""
        cfg = self.config.pose
        refined = self._refine_pose(matches, start, rows)
        keep = (refined.residuals_px <= cfg.reprojection_threshold_px) & refined.in_front
        if not np.all(keep) and np.count_nonzero(keep) >= 4:
            rows = rows[keep]
            refined = self._refine_pose(matches, refined.pose, rows)
        elif not np.all(keep):
            rows = rows[keep]
        return rows, refined

    def _support(
        self, matches: Matches, with_point: np.ndarray, chosen: np.ndarray
    ) -> tuple[dict[int, int], float]:
        """Inliers per supporting view, and the inlier ratio: distinct inlier keypoints over the
        distinct keypoints matched (with depth) in the supporting views."""
        per_view = np.bincount(matches.view_slot[chosen], minlength=len(matches.views))
        support = {int(matches.views[s]): int(c) for s, c in enumerate(per_view) if c > 0}
        supporting = np.isin(matches.view_slot[with_point], np.flatnonzero(per_view))
        matched_keypoints = len(np.unique(matches.query_index[with_point][supporting]))
        n_inliers = len(np.unique(matches.query_index[chosen]))
        return support, n_inliers / max(matched_keypoints, 1)

    def _solve_pnp(self, matches: Matches, check_ambiguity: bool) -> tuple[_Solved | None, str]:
        cfg, reject = self.config.pose, self.config.rejection
        with_point = np.flatnonzero(matches.has_point)
        if len(np.unique(matches.query_index[with_point])) < reject.min_inliers:
            return None, "too_few_matches"
        if self.map_is_uncertain and cfg.combine_panoramas:
            solved = self._solve_panoramas(matches, with_point, check_ambiguity)
            if solved is not None:
                return solved, STATUS_LOCALIZED
        uv = matches.query_xy[with_point]
        xyz = matches.points_map[with_point]
        ransac = pnp_ransac(uv, xyz, self.camera, cfg)
        if ransac is None:
            return None, "ransac_failed"
        chosen = self._distinct(matches, with_point[ransac.inliers])
        if len(chosen) < reject.min_inliers:
            return None, "too_few_inliers"
        chosen, refined = self._refine(matches, ransac.pose, chosen)
        if len(chosen) < reject.min_inliers:
            return None, "too_few_inliers"
        rejected_panoramas: list[int] = []
        if self.map_is_uncertain:
            # One mislocated panorama must not drag the pose: drop the one that disagrees most with
            # the others beyond its own (pixel + map) uncertainty, re-solve, until all agree.
            for _ in range(2):
                outlier = self._disagreeing_panorama(matches, chosen, refined)
                if outlier is None:
                    break
                remaining = chosen[self._row_panoramas(matches, chosen) != outlier]
                if len(remaining) < reject.min_inliers:
                    break
                rejected_panoramas.append(outlier)
                chosen = remaining
                refined = self._refine_pose(matches, refined.pose, chosen)
        n_inliers = len(chosen)
        support, inlier_ratio = self._support(matches, with_point, chosen)
        if inlier_ratio < reject.min_inlier_ratio:
            return None, "low_inlier_ratio"
        if check_ambiguity and self._ambiguous(matches, with_point, chosen, refined.pose, n_inliers):
            return None, "ambiguous"
        solutions = self._per_view_solutions(matches, chosen, refined)
        between = between_view_covariance(solutions)
        covariance = camera_covariance(
            refined.covariance, n_inliers, inlier_ratio, len(solutions), between, self.config.covariance
        ) + self._depth_covariance(matches, chosen, refined)
        pose = refined.pose
        if self.offsets is not None:
            # The learned errors of the panoramas it rests on taken out, what is not known added.
            panoramas, sensitivities = self._sensitivities(matches, chosen, refined)
            corrected = self.offsets.estimate(
                [OffsetObservation(np.zeros(6), covariance, panoramas, sensitivities)]
            )
            step = corrected.deviation
            pose = Pose3D(rotation_from_vector(step[3:]) @ pose.rotation, pose.translation + step[:3])
            covariance = corrected.covariance
        elif self.map_is_uncertain:
            covariance = covariance + self._map_covariance(
                matches, chosen, refined, self.config.covariance.map_correlation
            )
        info = {
            "method": "pnp",
            "inliers": n_inliers,
            "inlier_ratio": round(inlier_ratio, 4),
            "matches": len(matches),
            "matches_3d": len(with_point),
            "sigma_px": round(refined.sigma_px, 4),
            "ransac_iterations": ransac.iterations,
            "views": [[view, count] for view, count in support.items()],
            "views_solved": len(solutions),
        }
        if rejected_panoramas:
            info["rejected_panoramas"] = [self.bundle.panorama_ids[p] for p in rejected_panoramas]
        return _Solved(pose, covariance, support, n_inliers, info), STATUS_LOCALIZED

    def _solve_panoramas(
        self, matches: Matches, with_point: np.ndarray, check_ambiguity: bool
    ) -> _Solved | None:
        """Each panorama's matches solved alone (PnP-RANSAC and refinement), the panoramas whose
        poses agree with the best-supported one within their pixel and map uncertainty combined
        (:mod:`geoloc_ros.localize.combine`). None when fewer than two panoramas agree, or they fail
        the inlier, ratio or ambiguity checks: the pooled solution is tried then."""
        cfg = self.config
        row_panoramas = self._row_panoramas(matches, with_point)
        found: list[tuple[int, np.ndarray, RefinedPose]] = []
        for p in np.unique(row_panoramas):
            rows = with_point[row_panoramas == p]
            if len(np.unique(matches.query_index[rows])) < _MIN_VIEW_INLIERS:
                continue
            ransac = pnp_ransac(matches.query_xy[rows], matches.points_map[rows], self.camera, cfg.pose)
            if ransac is None:
                continue
            chosen = self._distinct(matches, rows[ransac.inliers])
            if len(chosen) < _MIN_VIEW_INLIERS:
                continue
            chosen, own = self._refine(matches, ransac.pose, chosen)
            if len(chosen) >= _MIN_VIEW_INLIERS and np.all(np.isfinite(own.covariance)):
                found.append((int(p), chosen, own))
        if len(found) < 2:
            return None
        found.sort(key=lambda item: -len(item[1]))
        reference = found[0][2].pose
        solutions: list[PanoramaSolution] = []
        rows_of: list[np.ndarray] = []
        for p, chosen, own in found:
            _, sensitivity = map_sensitivities(
                own.jacobian,
                own.weights,
                matches.points_map[chosen],
                np.full(len(chosen), p),
                self.panorama_centres,
            )
            pixel = camera_covariance(own.covariance, len(chosen), 1.0, 1, None, cfg.covariance)
            pixel = pixel + self._depth_covariance(matches, chosen, own)
            solution = PanoramaSolution(
                p,
                pose_deviation(own.pose, reference),
                pixel,
                sensitivity[0],
                float(self.panorama_sigma_m[p]),
                float(self.panorama_sigma_rad[p]),
                len(chosen),
            )
            if np.all(np.isfinite(solution.covariance())) and np.all(np.isfinite(solution.deviation)):
                solutions.append(solution)
                rows_of.append(chosen)
        if len(solutions) < 2 or solutions[0].panorama != found[0][0]:
            return None
        # Agreement with the best-supported panorama within both uncertainties (x, y, yaw).
        planar = np.array([0, 1, 5])
        gate = float(chi2.ppf(cfg.covariance.panorama_gate_probability, 3))
        first = solutions[0].covariance()
        agree = [0]
        for i in range(1, len(solutions)):
            d = solutions[i].deviation[planar]
            spread = (solutions[i].covariance() + first)[np.ix_(planar, planar)]
            if float(d @ np.linalg.solve(spread, d)) <= gate:
                agree.append(i)
        if len(agree) < 2:
            return None
        used = [solutions[i] for i in agree]
        chosen = np.concatenate([rows_of[i] for i in agree])
        n_inliers = len(np.unique(matches.query_index[chosen]))
        if n_inliers < cfg.rejection.min_inliers:
            return None
        support, inlier_ratio = self._support(matches, with_point, chosen)
        if inlier_ratio < cfg.rejection.min_inlier_ratio:
            return None
        update, contradicted, disagreement, learned = None, None, None, False
        if self.offsets is not None:
            corrected = self.offsets.estimate(
                [
                    OffsetObservation(
                        s.deviation, s.pixel_covariance, np.array([s.panorama]), s.sensitivity[None]
                    )
                    for s in used
                ]
            )
            step, covariance, update = corrected.deviation, corrected.covariance, corrected.update
            shares, contradicted = corrected.shares, corrected.contradicted
            disagreement, learned = corrected.disagreement, corrected.learned
        else:
            combination = combine_panorama_solutions(used, cfg.covariance.map_correlation)
            step, covariance, shares = combination.deviation, combination.covariance, combination.shares
        pose = Pose3D(rotation_from_vector(step[3:]) @ reference.rotation, reference.translation + step[:3])
        if check_ambiguity and self._ambiguous(matches, with_point, chosen, pose, n_inliers):
            return None
        ids = self.bundle.panorama_ids
        info: dict[str, Any] = {
            "method": "pnp_panoramas",
            "inliers": n_inliers,
            "inlier_ratio": round(inlier_ratio, 4),
            "matches": len(matches),
            "matches_3d": len(with_point),
            "views": [[view, count] for view, count in support.items()],
            "panoramas": {
                ids[s.panorama]: [s.inliers, round(float(w), 3)] for s, w in zip(used, shares, strict=True)
            },
        }
        rejected = [ids[solutions[i].panorama] for i in range(len(solutions)) if i not in agree]
        if rejected:
            info["rejected_panoramas"] = rejected
        if learned:
            info["offsets_learned"] = True
        if disagreement is not None:
            info["disagreement"] = round(disagreement, 3)
        if contradicted is not None and len(contradicted):
            info["offsets_contradicted"] = [ids[p] for p in contradicted]
        return _Solved(pose, covariance, support, n_inliers, info, update)

    # ------------------------------------------------------------------------------ map uncertainty
    def _learn_offsets(self, final: _Attempt) -> None:
        """An accepted frame's share in the panoramas' learned errors (what it taught, or the decay of
        what it contradicted), then the distance travelled since the last accepted frame
        (:class:`PanoramaOffsets`)."""
        assert self.offsets is not None and final.estimate is not None
        if final.offsets_update is not None:
            self.offsets.commit(final.offsets_update)
        position = final.estimate.pose.translation[:2]
        if self._offsets_position is not None:
            self.offsets.travel(float(np.linalg.norm(position - self._offsets_position)))
        self._offsets_position = np.array(position, dtype=float)

    def _in_panorama_frame(self, camera_pose: Pose3D, view: int) -> Pose3D:
        """``camera_pose`` moved by the learned error of ``view``'s panorama, the way its points are
        moved (``X' = C_p + R_z(ε)(X - C_p) + δ``): the camera that sees the stated points where
        ``camera_pose`` sees the true ones."""
        assert self.offsets is not None
        panorama = int(self.view_panorama[view])
        (dx, dy, eps), _ = self.offsets.offset(panorama)
        c, s = np.cos(eps), np.sin(eps)
        turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        centre = self.panorama_centres[panorama]
        moved = centre + turn @ (camera_pose.translation - centre) + np.array([dx, dy, 0.0])
        return Pose3D(turn @ camera_pose.rotation, moved)

    def _row_panoramas(self, matches: Matches, rows: np.ndarray) -> np.ndarray:
        return self.view_panorama[matches.views[matches.view_slot[rows]]]

    def _sensitivities(
        self, matches: Matches, rows: np.ndarray, refined: RefinedPose
    ) -> tuple[np.ndarray, np.ndarray]:
        """The panoramas of ``rows`` and how the pose solved from them moves with each one's error
        (:func:`map_sensitivities`)."""
        return map_sensitivities(
            refined.jacobian,
            refined.weights,
            matches.points_map[rows],
            self._row_panoramas(matches, rows),
            self.panorama_centres,
        )

    def _map_covariance(
        self, matches: Matches, rows: np.ndarray, refined: RefinedPose, correlation: float
    ) -> np.ndarray:
        """``Σ_map`` of the camera pose solved from ``rows`` (:func:`map_covariance`)."""
        panoramas, sensitivities = self._sensitivities(matches, rows, refined)
        return map_covariance(
            sensitivities, self.panorama_sigma_m[panoramas], self.panorama_sigma_rad[panoramas], correlation
        )

    def _rests_on_plane_depth(self, solved: _Solved) -> bool:
        """Most of the solution's inliers are points of panoramas whose depth is a plane model."""
        if solved.info.get("method") == "essential":
            return False
        views = np.fromiter(solved.support, dtype=np.int64, count=len(solved.support))
        counts = np.fromiter(solved.support.values(), dtype=float, count=len(solved.support))
        plane = self.plane_depth[self.view_panorama[views]]
        return bool(counts[plane].sum() > 0.5 * counts.sum())

    def _depth_covariance(self, matches: Matches, rows: np.ndarray, refined: RefinedPose) -> np.ndarray:
        """``Σ_depth`` of the camera pose solved from ``rows`` (:func:`depth_covariance`): the error
        of its points' depth, by their panoramas' depth models."""
        panoramas = self._row_panoramas(matches, rows)
        return depth_covariance(
            refined.jacobian,
            refined.weights,
            matches.points_map[rows],
            self.panorama_centres[panoramas],
            self.depth_sigma[panoramas],
        )

    def _disagreeing_panorama(self, matches: Matches, chosen: np.ndarray, refined: RefinedPose) -> int | None:
        """The panorama whose own pose (from its inliers alone) lies farthest from the joint one in
        (x, y, yaw), if beyond the ``panorama_gate_probability`` quantile of its uncertainty."""
        cfg = self.config.covariance
        row_panoramas = self._row_panoramas(matches, chosen)
        panoramas = np.unique(row_panoramas)
        if len(panoramas) < 2:
            return None
        planar = np.array([0, 1, 5])
        joint = camera_covariance(refined.covariance, len(chosen), 1.0, 1, None, cfg)
        joint = joint + self._map_covariance(matches, chosen, refined, cfg.map_correlation)
        joint = joint + self._depth_covariance(matches, chosen, refined)
        gate = float(chi2.ppf(cfg.panorama_gate_probability, 3))
        worst, worst_distance = None, gate
        for p in panoramas:
            rows = np.flatnonzero(row_panoramas == p)
            if len(rows) < _MIN_VIEW_INLIERS:
                continue
            step = refined.subset_step(rows)
            if step is None:
                continue
            # The panorama's own solution: its pixel noise (one view's worth of evidence) and its map error.
            j = refined.jacobian[rows].reshape(-1, 6)
            normal = np.einsum("ni,nj->ij", j, j)
            own = camera_covariance(
                refined.sigma_px**2 * np.linalg.pinv(normal), len(rows), 1.0, 1, None, cfg
            )
            alone = _own_solution(refined, rows)
            own = own + self._map_covariance(matches, chosen[rows], alone, 0.0)
            own = own + self._depth_covariance(matches, chosen[rows], alone)
            spread = (own + joint)[np.ix_(planar, planar)]
            try:
                distance = float(step[planar] @ np.linalg.solve(spread, step[planar]))
            except np.linalg.LinAlgError:
                continue
            if distance > worst_distance:
                worst, worst_distance = int(p), distance
        return worst

    def _ambiguous(
        self, matches: Matches, with_point: np.ndarray, chosen: np.ndarray, pose: Pose3D, n_inliers: int
    ) -> bool:
        """A second pose among the remaining matches with a comparable share of inliers."""
        reject = self.config.rejection
        rest = with_point[~np.isin(matches.query_index[with_point], matches.query_index[chosen])]
        needed = max(reject.min_inliers, int(np.ceil(reject.ambiguity_ratio * n_inliers)))
        if len(np.unique(matches.query_index[rest])) < needed:
            return False
        cfg = self.config.pose.model_copy(
            update={
                "max_iterations": _AMBIGUITY_ITERATIONS,
                "min_iterations": min(self.config.pose.min_iterations, _AMBIGUITY_ITERATIONS),
            }
        )
        second = pnp_ransac(matches.query_xy[rest], matches.points_map[rest], self.camera, cfg)
        if second is None:
            return False
        count = len(np.unique(matches.query_index[rest][second.inliers]))
        if count < needed:
            return False
        distance = float(np.linalg.norm(second.pose.translation - pose.translation))
        return distance > reject.ambiguity_distance_m

    def _per_view_solutions(
        self, matches: Matches, chosen: np.ndarray, refined: RefinedPose
    ) -> list[ViewSolution]:
        """Each supporting view's own pose, as a deviation from the joint one (``refined`` was
        solved on ``chosen``, in that order)."""
        solutions = []
        slots = matches.view_slot[chosen]
        for slot in np.unique(slots):
            rows = np.flatnonzero(slots == slot)
            if len(rows) < _MIN_VIEW_INLIERS:
                continue
            step = refined.subset_step(rows)
            # A view whose own solution runs away from the joint one is too weak to count.
            if step is not None and np.linalg.norm(step[:3]) < _MAX_VIEW_DEVIATION_M:
                solutions.append(ViewSolution(int(matches.views[slot]), step, len(rows)))
        return solutions

    def _solve_essential(self, matches: Matches) -> _Solved | None:
        cfg = self.config
        per_view = matches.per_view()
        relatives: list[RelativePose] = []
        for slot in np.flatnonzero(per_view >= cfg.pose.essential_min_inliers):
            rows = matches.view_slot == slot
            view = int(matches.views[slot])
            relative = relative_pose(
                matches.query_xy[rows],
                matches.reference_xy[rows],
                self.bundle.views.pose(view),
                view,
                self.camera,
                cfg.pose,
            )
            if relative is not None:
                relatives.append(relative)
        sigma = np.radians(cfg.covariance.essential_bearing_sigma_deg)
        bearing_sigma = sigma
        if self.map_is_uncertain and relatives:
            # The bearings start at the views' stated centres and turn with their stated headings:
            # a heading error is a bearing error, magnified by the intersection's geometry.
            panoramas = self.view_panorama[[r.view for r in relatives]]
            sigma_m = float(self.panorama_sigma_m[panoramas].max())
            sigma_rad = float(self.panorama_sigma_rad[panoramas].max())
            bearing_sigma = float(np.hypot(sigma, sigma_rad))
        fix = intersect_bearings(relatives, bearing_sigma)
        if fix is None:
            return None
        weights = [float(r.inliers) for r in relatives]
        rotation = mean_rotation([r.rotation_map_query for r in relatives], weights)
        # The views must agree on the rotation too (each estimates it on its own).
        spread = max(
            float(np.linalg.norm(vector_from_rotation(r.rotation_map_query @ rotation.T))) for r in relatives
        )
        if np.degrees(spread) > cfg.pose.essential_max_rotation_spread_deg:
            return None
        covariance = np.zeros((6, 6))
        covariance[:3, :3] = fix.covariance
        covariance[3:, 3:] = np.eye(3) * sigma**2 / len(relatives)
        covariance *= cfg.covariance.scale**2
        if self.map_is_uncertain:
            # The views' stated centres: the worst supporting panorama's error, shared (conservative).
            covariance[:2, :2] += np.eye(2) * sigma_m**2
            covariance[5, 5] += sigma_rad**2
        support = {r.view: r.inliers for r in relatives}
        info = {
            "method": "essential",
            "inliers": int(sum(weights)),
            "matches": len(matches),
            "views": [[view, count] for view, count in support.items()],
            "ranges_m": [round(float(v), 2) for v in fix.ranges_m],
        }
        return _Solved(Pose3D(rotation, fix.centre), covariance, support, int(sum(weights)), info)

    # ------------------------------------------------------------------------------ acceptance
    def _accept(
        self,
        stamp_ns: int,
        solved: _Solved,
        candidates: Candidates,
        prediction: Prediction | None,
        gps_prior: PositionPrior | None,
    ) -> tuple[PoseEstimate | None, str]:
        reject = self.config.rejection
        base_pose = solved.camera_pose.compose(self.t_optical_base)
        _, pitch, roll = ypr_of(base_pose.rotation)
        if abs(np.degrees(roll)) > reject.max_roll_deg or abs(np.degrees(pitch)) > reject.max_pitch_deg:
            return None, "implausible_attitude"
        views = np.fromiter(solved.support, dtype=np.int64, count=len(solved.support))
        height = float(base_pose.translation[2] - np.median(self.ground_z[views]))
        if not reject.min_height_m <= height <= reject.max_height_m:
            return None, "implausible_height"
        if prediction is not None:
            # The prediction is as good as the poses it comes from (3 sigma), plus what a vehicle can
            # do unseen: with a velocity, accelerate (within max_jump_m); without, drive at any speed.
            slack = 3.0 * prediction.sigma_m
            if not prediction.has_velocity:
                slack += reject.max_speed_mps * prediction.age_s
            jump = float(np.linalg.norm(base_pose.translation[:2] - prediction.pose.translation[:2]))
            if jump > reject.max_jump_m + slack:
                return None, "jump"
        elif (last := self.tracker.last_fix()) is not None:
            # Tracking was lost, not the vehicle: it is within driving distance of its last pose.
            last_stamp, last_pose, last_sigma = last
            age = (stamp_ns - last_stamp) * 1e-9
            if 0.0 < age <= reject.reacquire_horizon_s:
                # No prediction checks a re-localization: on coarse depth it needs more support.
                weak = solved.n_inliers < reject.coarse_depth_global_min_inliers
                if weak and self._rests_on_plane_depth(solved):
                    return None, "weak_global"
                reach = reject.max_jump_m + reject.max_speed_mps * age + 3.0 * last_sigma
                if np.linalg.norm(base_pose.translation[:2] - last_pose.translation[:2]) > reach:
                    return None, "unreachable"
        if gps_prior is not None:
            offset = float(np.linalg.norm(base_pose.translation[:2] - gps_prior.xy))
            if offset > reject.gps_gate_sigmas * gps_prior.sigma_m + 5.0:
                return None, "gps_gate"
        covariance = with_floor(
            base_covariance(solved.camera_pose, solved.covariance, self.t_base_optical),
            self.config.covariance,
        )
        # A covariance that cannot be inverted (inf or NaN) states nothing: as vague as can be.
        finite = bool(np.all(np.isfinite(covariance)))
        if not finite or worst_horizontal_sigma(covariance) > reject.max_position_sigma_m:
            return None, "vague"
        info = dict(solved.info)
        info.update(
            {"mode": candidates.mode, "height_m": round(height, 3), "candidates": candidates.views.tolist()}
        )
        estimate = PoseEstimate(stamp_ns, base_pose, covariance, SOURCE_BOVW, info=info)
        return estimate, STATUS_LOCALIZED
