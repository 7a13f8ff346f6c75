"""Accuracy, continuity and covariance-calibration metrics of pose estimates against ground truth.

Definitions (also printed in the report):

- **frames**: the camera frames of the drive (the caller gives their number or stamps); a source
  that publishes on other stamps (consumer GPS) is first held to the frames with
  :func:`hold_at_frames`, or evaluated against its own message count.
- **localized**: frames with an estimate (one per stamp; duplicates keep the last and are counted).
- **evaluated**: localized frames with ground truth at their stamp (estimates before, after or
  inside a gap of the ground truth are flagged and left out of every error statistic).
- **continuity** = localized / frames.
- **position error**: horizontal (2D) distance; 3D optionally.
- **error bins** (the seed's): shares of evaluated frames with error in [0, 1), [1, 2), [2, 3),
  [3, 4) and [4, inf) metres.
- **heading error**: absolute wrapped difference, degrees, over evaluated frames where both the
  estimate (yaw variance below the "unknown" level) and the ground truth have a heading.
- **recall at (d, a)**: frames with position error <= d and heading error <= a, as a share of all
  frames (``of_frames``) and of the evaluated frames with a heading (``of_evaluated``).
- **recall at d**: frames with position error <= d (1, 3, 5 m), as a share of all frames.
- **coverage**: share of evaluated frames (with a finite position covariance) whose true position
  lies inside the published 95% ellipse (chi-square, 2 dof); **NEES**: mean ``e^T C^-1 e`` over
  position (2 dof) and over (x, y, yaw) (3 dof). A calibrated source has coverage ~95% and NEES
  ~ its dof.
- **cross-track / along-track error** (:func:`track_errors`): the position error in the ground
  truth's own frame, as Autoware's localization evaluators report it: along-track is the
  component along the true heading (positive = ahead), cross-track the lateral one (positive =
  left). Over evaluated frames where the ground truth has a heading; mean of the absolute value,
  RMSE and 95th percentile of the absolute value.
- **RPE** (:func:`relative_errors`): for each evaluated frame ``i`` and the first evaluated frame
  ``j`` at least ``Δ`` later (1 s) or farther along the true track (10 m), at most 1.5 ``Δ``,
  ``|(est_j - est_i) - (true_j - true_i)| / Δ_ij``: drift in m per second and in m per metre
  travelled (as a share); mean and RMSE over the pairs.
- **integrity**: p99 and max of the position error; **false confidence**: share of evaluated
  frames (with a finite position covariance) whose error lies outside their own 99.9% ellipse
  (``NEES > chi2(0.999, 2)``); ~0.1% when calibrated, far more when the covariance is
  overconfident.
- **availability** (:func:`availability`, on the frame stamps): **time to first fix** from the
  first frame to the first estimate; **longest gap**: the longest time without an estimate after
  the first fix (between consecutive estimates, or from the last one to the last frame). A
  **loss** is a stretch of more than 1 s without a good estimate (none, or error > 5 m; an estimate
  without ground truth counts as good); its **re-acquisition time** runs from the last good
  estimate before it to the next good one (median and max; losses to the end of the drive are
  counted as not re-acquired).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from geoloc_ros.evaluation.errors import EvaluationError
from geoloc_ros.evaluation.groundtruth import GroundTruth, GroundTruthAtStamps, GroundTruthStatus
from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE, chi2_quantile
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_ORDER

logger = logging.getLogger(__name__)

ERROR_BIN_EDGES_M = (0.0, 1.0, 2.0, 3.0, 4.0, math.inf)
ERROR_BIN_KEYS = ("0-1m", "1-2m", "2-3m", "3-4m", ">4m")
RECALL_THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))
RECALL_DISTANCES_M = (1.0, 3.0, 5.0)
COVERAGE_PROBABILITY = 0.95
INTEGRITY_PROBABILITY = 0.999
RPE_WINDOW_S = 1.0
RPE_WINDOW_M = 10.0
# A pair for the RPE spans at most this many windows (no pairs across long gaps).
RPE_MAX_SPAN = 1.5
LOSS_ERROR_M = 5.0
LOSS_AFTER_S = 1.0
# A variance at or above this means "not estimated" (e.g. the yaw of a GPS fix).
NOT_ESTIMATED_VARIANCE = UNKNOWN_VARIANCE / 10.0


@dataclass(frozen=True)
class AssociatedEstimates:
    """One source's estimates side by side with the ground truth at their stamps."""

    source: str
    stamps_ns: np.ndarray
    positions: np.ndarray  # (M, 3) estimated
    yaw: np.ndarray  # (M,) estimated; NaN where the source gives no heading
    planar_covariance: np.ndarray  # (M, 3, 3) over (x, y, yaw)
    truth: GroundTruthAtStamps
    n_duplicates: int = 0

    def __len__(self) -> int:
        return int(self.stamps_ns.size)

    @property
    def evaluated(self) -> np.ndarray:
        return self.truth.valid

    @property
    def position_error_2d(self) -> np.ndarray:
        """Horizontal error (m); NaN where there is no ground truth."""
        d = self.positions[:, :2] - self.truth.positions[:, :2]
        return np.hypot(d[:, 0], d[:, 1])

    @property
    def position_error_3d(self) -> np.ndarray:
        return np.linalg.norm(self.positions - self.truth.positions, axis=1)

    @property
    def signed_heading_error(self) -> np.ndarray:
        """Estimated minus true yaw, wrapped (rad); NaN where either is unknown."""
        return wrap_angle(self.yaw - self.truth.yaw)

    @property
    def heading_error(self) -> np.ndarray:
        """Absolute wrapped heading error (rad); NaN where either heading is unknown."""
        return np.abs(self.signed_heading_error)


def _dedupe(estimates: Sequence[PoseEstimate], source: str) -> tuple[list[PoseEstimate], int]:
    by_stamp: dict[int, PoseEstimate] = {}
    for estimate in estimates:
        by_stamp[estimate.stamp_ns] = estimate
    duplicates = len(estimates) - len(by_stamp)
    if duplicates:
        logger.warning(
            "source '%s': %d estimates share a stamp with another; kept the last", source, duplicates
        )
    return [by_stamp[s] for s in sorted(by_stamp)], duplicates


def associate(
    estimates: Sequence[PoseEstimate], ground_truth: GroundTruth, source: str = ""
) -> AssociatedEstimates:
    """Pair each estimate with the ground truth interpolated at its stamp."""
    name = source or (estimates[0].source if estimates else "")
    frames = {e.frame_id for e in estimates}
    if len(frames) > 1:
        raise EvaluationError(f"source '{name}': estimates are in several frames {sorted(frames)}")
    unique, duplicates = _dedupe(estimates, name)
    n = len(unique)
    positions = np.array([e.position for e in unique], dtype=float).reshape(n, 3)
    covariance = np.array([e.planar_covariance for e in unique], dtype=float).reshape(n, 3, 3)
    yaw = np.array([e.yaw for e in unique], dtype=float).reshape(n)
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(yaw))):
        raise EvaluationError(f"source '{name}': estimates have non-finite positions or headings")
    yaw[~(covariance[:, 2, 2] < NOT_ESTIMATED_VARIANCE)] = np.nan
    stamps = np.array([e.stamp_ns for e in unique], dtype=np.int64)
    return AssociatedEstimates(name, stamps, positions, yaw, covariance, ground_truth.at(stamps), duplicates)


def hold_at_frames(
    estimates: Sequence[PoseEstimate], frame_stamps_ns: npt.ArrayLike, max_age_s: float
) -> list[PoseEstimate]:
    """Re-stamp a stream to the camera frames: each frame gets the latest estimate at most
    ``max_age_s`` old (zero-order hold), as a consumer of that stream would use it at the frame.

    The held pose is unchanged, so its error includes the staleness. ``info["held_from_stamp_ns"]``
    keeps the original stamp.
    """
    ordered = sorted(estimates, key=lambda e: e.stamp_ns)
    source_stamps = np.array([e.stamp_ns for e in ordered], dtype=np.int64)
    frames = np.asarray(frame_stamps_ns, dtype=np.int64).reshape(-1)
    latest = np.searchsorted(source_stamps, frames, side="right") - 1
    max_age_ns = round(max_age_s * 1e9)
    held = []
    for frame, k in zip(frames.tolist(), latest.tolist(), strict=True):
        if k < 0 or frame - int(source_stamps[k]) > max_age_ns:
            continue
        e = ordered[k]
        info = {**e.info, "held_from_stamp_ns": e.stamp_ns}
        held.append(PoseEstimate(frame, e.pose, e.covariance, e.source, e.frame_id, info))
    return held


def track_errors(error_xy: npt.ArrayLike, heading: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Along-track and cross-track components of planar errors ``(N, 2)`` (estimate minus truth) in
    the frame of the true heading ``(N,)`` (rad, ENU): along positive ahead, cross positive left.
    NaN where the heading is NaN."""
    e = np.asarray(error_xy, dtype=float).reshape(-1, 2)
    h = np.asarray(heading, dtype=float).reshape(-1)
    c, s = np.cos(h), np.sin(h)
    return e[:, 0] * c + e[:, 1] * s, -e[:, 0] * s + e[:, 1] * c


def relative_errors(
    keys: npt.ArrayLike,
    estimated_xy: npt.ArrayLike,
    true_xy: npt.ArrayLike,
    window: float,
    max_span: float = RPE_MAX_SPAN,
) -> np.ndarray:
    """Relative position error per unit of ``keys`` (time in s, or distance travelled in m).

    ``keys`` increase; for each ``i`` the pair is the first ``j`` with ``keys[j] - keys[i] >= window``,
    kept when that span is at most ``max_span * window``. Returns ``|Δest - Δtrue| / Δkey`` per pair.
    """
    k = np.asarray(keys, dtype=float).reshape(-1)
    est = np.asarray(estimated_xy, dtype=float).reshape(-1, 2)
    true = np.asarray(true_xy, dtype=float).reshape(-1, 2)
    if window <= 0.0:
        raise EvaluationError(f"RPE window must be > 0, got {window}")
    i = np.arange(k.size)
    j = np.searchsorted(k, k + window, side="left")
    keep = j < k.size
    i, j = i[keep], j[keep]
    span = k[j] - k[i]
    keep = span <= max_span * window
    i, j, span = i[keep], j[keep], span[keep]
    drift = (est[j] - est[i]) - (true[j] - true[i])
    return np.hypot(drift[:, 0], drift[:, 1]) / span


def travelled_distance(xy: npt.ArrayLike) -> np.ndarray:
    """Cumulative distance along a planar track ``(N, 2)`` (m), starting at 0."""
    p = np.asarray(xy, dtype=float).reshape(-1, 2)
    if p.shape[0] == 0:
        return np.zeros(0)
    steps = np.hypot(*np.diff(p, axis=0).T)
    return np.concatenate([[0.0], np.cumsum(steps)])


@dataclass(frozen=True)
class Availability:
    """Timing figures of one source on the frame stamps (s); ``None`` where undefined."""

    time_to_first_fix_s: float | None
    longest_gap_s: float | None
    n_losses: int
    n_not_reacquired: int
    reacquisition_median_s: float | None
    reacquisition_max_s: float | None


def availability(
    frame_stamps_ns: npt.ArrayLike,
    fix_stamps_ns: npt.ArrayLike,
    good: npt.ArrayLike,
    loss_after_s: float = LOSS_AFTER_S,
) -> Availability:
    """Time to first fix, longest gap and re-acquisition (module docstring) from the frame stamps,
    the stamps of the estimates and, per estimate, whether it is good."""
    frames = np.sort(np.asarray(frame_stamps_ns, dtype=np.int64).reshape(-1))
    fixes = np.asarray(fix_stamps_ns, dtype=np.int64).reshape(-1)
    ok = np.asarray(good, dtype=bool).reshape(-1)
    if fixes.size != ok.size:
        raise EvaluationError(f"{fixes.size} estimate stamps but {ok.size} good flags")
    order = np.argsort(fixes, kind="stable")
    fixes, ok = fixes[order], ok[order]
    if frames.size == 0 or fixes.size == 0:
        return Availability(None, None, 0, 0, None, None)
    last = max(int(frames[-1]), int(fixes[-1]))
    first_fix = max(0.0, float((fixes[0] - frames[0]) * 1e-9))  # an estimate may precede the frames
    gaps = np.diff(np.append(fixes, last)) * 1e-9
    good_stamps = fixes[ok]
    if good_stamps.size == 0:
        return Availability(first_fix, float(gaps.max()), 0, 0, None, None)
    # A loss: the time from a good estimate to the next good one (or to the end) exceeds loss_after_s.
    spans = np.diff(good_stamps) * 1e-9
    reacquired = spans[spans > loss_after_s]
    to_end = (last - int(good_stamps[-1])) * 1e-9
    not_reacquired = int(to_end > loss_after_s)
    return Availability(
        time_to_first_fix_s=first_fix,
        longest_gap_s=float(gaps.max()),
        n_losses=int(reacquired.size) + not_reacquired,
        n_not_reacquired=not_reacquired,
        reacquisition_median_s=float(np.median(reacquired)) if reacquired.size else None,
        reacquisition_max_s=float(reacquired.max()) if reacquired.size else None,
    )


@dataclass(frozen=True)
class Recall:
    position_m: float
    heading_deg: float
    of_frames: float | None
    of_evaluated: float | None


@dataclass(frozen=True)
class SourceMetrics:
    """Every figure of one source; ``None`` where a figure is undefined (nothing to compute it on)."""

    source: str
    n_frames: int
    n_localized: int
    n_evaluated: int
    n_outside_ground_truth: int
    n_duplicates: int
    continuity: float
    continuity_after_first_fix: float | None
    mean_error_m: float | None
    median_error_m: float | None
    rmse_m: float | None
    p95_error_m: float | None
    max_error_m: float | None
    error_bins: dict[str, float] | None
    error_bin_counts: dict[str, int]
    n_heading: int
    heading_mean_deg: float | None
    heading_median_deg: float | None
    heading_rmse_deg: float | None
    recall: list[Recall]
    n_covariance: int
    coverage_95: float | None
    mean_nees_position: float | None
    n_nees_pose: int
    mean_nees_pose: float | None
    mean_error_3d_m: float | None = None
    median_error_3d_m: float | None = None
    rmse_3d_m: float | None = None
    outside_ground_truth: dict[str, int] = field(default_factory=dict)
    p99_error_m: float | None = None
    recall_at_m: dict[str, float | None] = field(default_factory=dict)
    n_track: int = 0
    cross_track_mean_m: float | None = None
    cross_track_rmse_m: float | None = None
    cross_track_p95_m: float | None = None
    along_track_mean_m: float | None = None
    along_track_rmse_m: float | None = None
    along_track_p95_m: float | None = None
    n_rpe_time: int = 0
    rpe_per_second_mean: float | None = None
    rpe_per_second_rmse: float | None = None
    n_rpe_distance: int = 0
    rpe_per_metre_mean: float | None = None
    rpe_per_metre_rmse: float | None = None
    false_confidence: float | None = None
    n_false_confidence: int = 0
    availability: Availability | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SourceEvaluation:
    metrics: SourceMetrics
    associated: AssociatedEstimates


def _stats(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    if values.size == 0:
        return None, None, None
    return float(np.mean(values)), float(np.median(values)), float(np.sqrt(np.mean(values**2)))


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def _abs_stats(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean of |v|, RMSE, 95th percentile of |v|."""
    if values.size == 0:
        return None, None, None
    a = np.abs(values)
    return float(a.mean()), float(np.sqrt(np.mean(a**2))), float(np.percentile(a, 95))


def _mean_rmse(values: np.ndarray) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    return float(values.mean()), float(np.sqrt(np.mean(values**2)))


def _nees(errors: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """``e_i^T C_i^-1 e_i`` per row; NaN where ``C_i`` is not finite and positive definite."""
    out = np.full(errors.shape[0], np.nan)
    if errors.shape[0] == 0:
        return out
    finite = np.all(np.isfinite(covariances), axis=(1, 2))
    usable = finite.copy()
    usable[finite] = np.linalg.eigvalsh(covariances[finite]).min(axis=1) > 0.0
    if usable.any():
        e = errors[usable]
        solved = np.linalg.solve(covariances[usable], e[..., None])[..., 0]
        out[usable] = np.sum(e * solved, axis=1)
    return out


def compute_metrics(
    associated: AssociatedEstimates,
    n_frames: int,
    frame_stamps_ns: npt.ArrayLike | None = None,
    include_3d: bool = False,
) -> SourceMetrics:
    """All metrics of one associated source (see the module docstring for the definitions)."""
    name = associated.source
    n_localized = len(associated)
    if n_frames < n_localized:
        raise EvaluationError(
            f"source '{name}': {n_localized} localized frames but only {n_frames} frames; "
            "hold non-frame streams to the frames (hold_at_frames) or pass their message count"
        )
    continuity_after_first_fix = None
    if frame_stamps_ns is not None and n_localized:
        frames = np.asarray(frame_stamps_ns, dtype=np.int64)
        after = int(np.count_nonzero(frames >= associated.stamps_ns[0]))
        continuity_after_first_fix = _share(
            int(np.count_nonzero(np.isin(associated.stamps_ns, frames))), after
        )

    ok = associated.evaluated
    n_evaluated = int(np.count_nonzero(ok))
    err = associated.position_error_2d[ok]
    mean, median, rmse = _stats(err)
    counts, _ = np.histogram(err, bins=np.array(ERROR_BIN_EDGES_M))
    bin_counts = {k: int(c) for k, c in zip(ERROR_BIN_KEYS, counts, strict=True)}
    bins = {k: c / n_evaluated for k, c in bin_counts.items()} if n_evaluated else None

    heading = associated.heading_error[ok]
    has_heading = np.isfinite(heading)
    heading_deg = np.degrees(heading[has_heading])
    h_mean, h_median, h_rmse = _stats(heading_deg)
    recall = []
    for distance, angle in RECALL_THRESHOLDS:
        if not has_heading.any():
            recall.append(Recall(distance, angle, None, None))
            continue
        hits = int(np.count_nonzero((err[has_heading] <= distance) & (heading_deg <= angle)))
        recall.append(Recall(distance, angle, _share(hits, n_frames), _share(hits, int(has_heading.sum()))))

    cov = associated.planar_covariance[ok]
    position_known = np.all(np.diagonal(cov[:, :2, :2], axis1=1, axis2=2) < NOT_ESTIMATED_VARIANCE, axis=1)
    d_xy = (associated.positions[:, :2] - associated.truth.positions[:, :2])[ok]
    nees_position = _nees(d_xy[position_known], cov[position_known][:, :2, :2])
    nees_position = nees_position[np.isfinite(nees_position)]
    inside = int(np.count_nonzero(nees_position <= chi2_quantile(COVERAGE_PROBABILITY, 2)))

    pose_known = position_known & has_heading
    e_pose = np.concatenate([d_xy, associated.signed_heading_error[ok][:, None]], axis=1)[pose_known]
    nees_pose = _nees(e_pose, cov[pose_known])
    nees_pose = nees_pose[np.isfinite(nees_pose)]

    status = associated.truth.status
    outside = {
        s.name.lower(): associated.truth.count(s) for s in GroundTruthStatus if s != GroundTruthStatus.VALID
    }
    d_all = associated.positions[:, :2] - associated.truth.positions[:, :2]
    along, cross = track_errors(d_all[ok], associated.truth.yaw[ok])
    track_known = np.isfinite(along)
    cross_stats, along_stats = _abs_stats(cross[track_known]), _abs_stats(along[track_known])
    stamps_ok = associated.stamps_ns[ok]
    est_ok, true_ok = associated.positions[ok, :2], associated.truth.positions[ok, :2]
    seconds = (stamps_ok - (stamps_ok[0] if stamps_ok.size else 0)) * 1e-9
    rpe_time = relative_errors(seconds, est_ok, true_ok, RPE_WINDOW_S)
    rpe_distance = relative_errors(travelled_distance(true_ok), est_ok, true_ok, RPE_WINDOW_M)
    rpe_s, rpe_m = _mean_rmse(rpe_time), _mean_rmse(rpe_distance)
    n_overconfident = int(np.count_nonzero(nees_position > chi2_quantile(INTEGRITY_PROBABILITY, 2)))
    recall_at_m = {f"{d:g}m": _share(int(np.count_nonzero(err <= d)), n_frames) for d in RECALL_DISTANCES_M}
    timing = None
    if frame_stamps_ns is not None:
        error_all = associated.position_error_2d
        good = ~(error_all > LOSS_ERROR_M)  # NaN (no ground truth) counts as good
        timing = availability(frame_stamps_ns, associated.stamps_ns, good)

    mean_3d = median_3d = rmse_3d = None
    if include_3d:
        mean_3d, median_3d, rmse_3d = _stats(associated.position_error_3d[ok])
    return SourceMetrics(
        source=name,
        n_frames=n_frames,
        n_localized=n_localized,
        n_evaluated=n_evaluated,
        n_outside_ground_truth=int(np.count_nonzero(status != GroundTruthStatus.VALID)),
        n_duplicates=associated.n_duplicates,
        continuity=n_localized / n_frames if n_frames else 0.0,
        continuity_after_first_fix=continuity_after_first_fix,
        mean_error_m=mean,
        median_error_m=median,
        rmse_m=rmse,
        p95_error_m=float(np.percentile(err, 95)) if err.size else None,
        max_error_m=float(err.max()) if err.size else None,
        error_bins=bins,
        error_bin_counts=bin_counts,
        n_heading=int(has_heading.sum()),
        heading_mean_deg=h_mean,
        heading_median_deg=h_median,
        heading_rmse_deg=h_rmse,
        recall=recall,
        n_covariance=int(nees_position.size),
        coverage_95=_share(inside, int(nees_position.size)),
        mean_nees_position=float(nees_position.mean()) if nees_position.size else None,
        n_nees_pose=int(nees_pose.size),
        mean_nees_pose=float(nees_pose.mean()) if nees_pose.size else None,
        mean_error_3d_m=mean_3d,
        median_error_3d_m=median_3d,
        rmse_3d_m=rmse_3d,
        outside_ground_truth=outside,
        p99_error_m=float(np.percentile(err, 99)) if err.size else None,
        recall_at_m=recall_at_m,
        n_track=int(track_known.sum()),
        cross_track_mean_m=cross_stats[0],
        cross_track_rmse_m=cross_stats[1],
        cross_track_p95_m=cross_stats[2],
        along_track_mean_m=along_stats[0],
        along_track_rmse_m=along_stats[1],
        along_track_p95_m=along_stats[2],
        n_rpe_time=int(rpe_time.size),
        rpe_per_second_mean=rpe_s[0],
        rpe_per_second_rmse=rpe_s[1],
        n_rpe_distance=int(rpe_distance.size),
        rpe_per_metre_mean=rpe_m[0],
        rpe_per_metre_rmse=rpe_m[1],
        false_confidence=_share(n_overconfident, int(nees_position.size)),
        n_false_confidence=n_overconfident,
        availability=timing,
    )


def evaluate_source(
    estimates: Sequence[PoseEstimate],
    ground_truth: GroundTruth,
    *,
    n_frames: int | None = None,
    frame_stamps_ns: npt.ArrayLike | None = None,
    source: str = "",
    include_3d: bool = False,
) -> SourceEvaluation:
    """Associate and measure one source. ``n_frames`` defaults to ``len(frame_stamps_ns)``."""
    if n_frames is None:
        if frame_stamps_ns is None:
            raise EvaluationError(f"source '{source}': give n_frames or frame_stamps_ns")
        n_frames = int(np.asarray(frame_stamps_ns).size)
    associated = associate(estimates, ground_truth, source)
    return SourceEvaluation(compute_metrics(associated, n_frames, frame_stamps_ns, include_3d), associated)


@dataclass(frozen=True)
class EvaluationResult:
    """Every source's evaluation against one ground truth, in the caller's order."""

    ground_truth: GroundTruth
    sources: dict[str, SourceEvaluation]

    @property
    def metrics(self) -> list[SourceMetrics]:
        return [s.metrics for s in self.sources.values()]

    def as_dict(self) -> dict[str, Any]:
        start, end = self.ground_truth.span_ns
        return {
            "ground_truth": {
                "samples": len(self.ground_truth),
                "start_stamp_ns": start,
                "end_stamp_ns": end,
                "heading_source": self.ground_truth.heading_source,
                "max_gap_s": self.ground_truth.max_gap_s,
            },
            "sources": {name: s.metrics.as_dict() for name, s in self.sources.items()},
        }


def evaluate_recorded(
    estimates_by_source: Mapping[str, Sequence[PoseEstimate]],
    ground_truth: GroundTruth,
    frame_stamps_ns: npt.ArrayLike,
    hold_s: float,
) -> EvaluationResult:
    """Evaluate recorded estimates (a live run's, or ``geoloc localize``'s) at the drive's camera
    frames, sources in :data:`~geoloc_ros.geometry.sources.SOURCE_ORDER` (others after, by name). A
    source whose stamps are not all camera frames (a filter publishing at its own rate) is held at
    the frames for ``hold_s`` (:func:`hold_at_frames`), as the offline evaluation holds consumer GPS.
    """
    frames = np.asarray(frame_stamps_ns, dtype=np.int64).reshape(-1)
    order = [s for s in SOURCE_ORDER if s in estimates_by_source]
    order += sorted(s for s in estimates_by_source if s not in SOURCE_ORDER)
    ordered = {}
    for source in order:
        estimates = estimates_by_source[source]
        on_frames = bool(np.isin([e.stamp_ns for e in estimates], frames).all())
        ordered[source] = list(estimates) if on_frames else hold_at_frames(estimates, frames, hold_s)
    return evaluate_sources(ordered, ground_truth, frame_stamps_ns=frames, n_frames=len(frames))


def evaluate_sources(
    estimates_by_source: Mapping[str, Sequence[PoseEstimate]],
    ground_truth: GroundTruth,
    *,
    frame_stamps_ns: npt.ArrayLike | None = None,
    n_frames: int | Mapping[str, int] | None = None,
    include_3d: bool = False,
) -> EvaluationResult:
    """Evaluate several sources; ``n_frames`` may differ per source (a mapping) or default to the frames."""
    results = {}
    for name, estimates in estimates_by_source.items():
        count = n_frames.get(name) if isinstance(n_frames, Mapping) else n_frames
        results[name] = evaluate_source(
            estimates,
            ground_truth,
            n_frames=count,
            frame_stamps_ns=frame_stamps_ns,
            source=name,
            include_3d=include_3d,
        )
    return EvaluationResult(ground_truth, results)
