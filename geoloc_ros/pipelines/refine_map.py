"""Map refinement: corrected panorama poses from the panoramas themselves (and optional survey drives).

Real GIS metadata is off by about a metre and a degree or two (``docs/formats.md``). Every 3D point
of a panorama's views moves rigidly with its stated pose, so two panoramas that see the same façade
disagree on where its points are by the difference of their errors. :func:`refine_bundle`:

1. **Pairs**: panoramas whose stated centres lie within ``max_pair_distance_m``.
2. **Matches**: RootSIFT features (with a 3D point) of the rectified views of both, ratio test, then
   a seeded RANSAC of a planar rigid motion (x, y, yaw) between the two point sets; pairs with fewer
   than ``min_inliers`` agreeing points give no constraint.
3. **Pose graph**: unknowns ``m_p = (δx, δy, ε)`` per panorama, the correction taking its stated pose
   to the true one (``X_true = C_p + R_z(ε)(X - C_p) + δ``). Residuals: each matched point pair
   ``(T_i(a) - T_j(b)) / σ_point``; the metadata priors ``m_p / σ_p`` (``position_sigma_m`` /
   ``heading_sigma_deg``), correlated between nearby panoramas (``prior_correlation``: a capture
   car's drift is shared, and matches cannot see a shared error); each survey-drive anchor (below). Solved by
   ``scipy.optimize.least_squares`` (trust region, sparse Jacobian, ``soft_l1`` robust loss against
   wrong matches). The correction's covariance is the inverse of ``JᵀJ`` at the solution.
4. **Anchors** (:func:`drive_anchors`, optional): a survey drive with RTK localized against the map;
   a frame whose PnP inliers come (mostly) from one panorama says where that panorama really is:
   ``T_p(estimated position) = RTK position``, ``estimated yaw + ε_p = RTK yaw``.
5. **Output**: a new bundle (:func:`write_refined_bundle`): the views, their 3D points and the
   panoramas moved by their corrections, the records carrying the refined poses and their standard
   deviations, ``refinement/corrections.json`` (per panorama: correction and 3x3 covariance), the
   manifest's ``refinement`` summary and ``map_version`` + 1. Atomic and checksummed like any bundle;
   the input bundle is never modified.
6. **Reuse**: the refined bundle also carries the pair cache (``refinement/pairs.json`` and
   ``refinement/pair_points.npy``): each considered pair's agreeing point pairs (or none) under a key
   hashing both panoramas' content ids (:func:`panorama_content_id`) and the matching settings.
   Refining a bundle with panoramas added (``reuse=[earlier refined bundle]``) matches only the pairs
   with a new or changed panorama; each pair's RANSAC has its own seed, so the result equals a
   refinement from scratch.

Only the horizontal pose is refined (altitude, pitch and roll are kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import scipy.sparse
from pydantic import Field
from scipy.optimize import least_squares

from geoloc_ros.bovw.features import FeatureKind
from geoloc_ros.config import StrictModel
from geoloc_ros.geo.enu import enu_to_geodetic
from geoloc_ros.geometry.covariance import worst_horizontal_sigma
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.mapping.container import BundleWriter
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.map import PANORAMA_POSITIONS, PANORAMA_RECORDS, MapBundle, ViewKind

if TYPE_CHECKING:
    from geoloc_ros.evaluation.groundtruth import GroundTruthAtStamps
    from geoloc_ros.geometry.estimate import PoseEstimate

logger = logging.getLogger(__name__)

CORRECTIONS_NAME = "refinement/corrections"
# The pair cache (module docstring, "Reuse"): one entry per matched panorama pair, its point pairs
# as rows [start, end) of PAIR_POINTS_NAME (x_a, y_a, x_b, y_b); start == end: no agreement.
PAIR_CACHE_NAME = "refinement/pairs"
PAIR_POINTS_NAME = "refinement/pair_points"
# The settings a pair's matches depend on (a change to any of them recomputes every pair).
_MATCH_FIELDS = (
    "ratio",
    "max_features",
    "virtual_views",
    "ransac_threshold_m",
    "ransac_iterations",
    "max_height_difference_m",
    "min_inliers",
    "max_sigmas",
    "max_pairs_per_edge",
    "seed",
)
# A panorama that states an exact pose is held by a prior this tight (m, rad).
_EXACT_SIGMA = 1e-3


class RefineError(MapBuildError):
    """The refinement cannot run or did not converge; the message says why."""


class RefineConfig(StrictModel):
    """Settings of :func:`refine_bundle`."""

    max_pair_distance_m: float = Field(45.0, gt=0.0, description="panoramas closer than this are matched")
    ratio: float = Field(0.85, gt=0.0, le=1.0, description="Lowe's ratio test")
    max_features: int = Field(12000, ge=100, description="features per panorama (strongest kept)")
    virtual_views: bool = Field(True, description="also match the virtual views' features")
    ransac_threshold_m: float = Field(0.4, gt=0.0, description="planar distance of an agreeing point pair")
    ransac_iterations: int = Field(400, ge=10)
    max_height_difference_m: float = Field(0.5, gt=0.0, description="matched points' heights must agree")
    min_inliers: int = Field(12, ge=3, description="agreeing point pairs for a pair constraint")
    max_sigmas: float = Field(
        4.0, gt=0.0, description="relative motions beyond this many stated sigmas are not considered"
    )
    max_pairs_per_edge: int = Field(150, ge=3, description="point pairs kept per panorama pair")
    point_sigma_m: float = Field(0.15, gt=0.0, description="planar noise of one matched 3D point pair")
    anchor_sigma_m: float = Field(0.1, gt=0.0, description="floor of a survey frame's position noise")
    anchor_yaw_sigma_deg: float = Field(0.15, gt=0.0, description="floor of a survey frame's yaw noise")
    anchor_min_share: float = Field(0.8, gt=0.5, le=1.0, description="inlier share of one panorama")
    max_nfev: int = Field(200, ge=1, description="solver evaluations before giving up")
    prior_correlation: float = Field(
        0.5, ge=0.0, le=0.95, description="share of the metadata error shared by nearby panoramas (drift)"
    )
    prior_correlation_m: float = Field(150.0, gt=0.0, description="distance over which that share decays")
    localizer: LocalizerConfig = Field(
        default_factory=LocalizerConfig, description="how survey drives are localized (map uncertainty off)"
    )
    seed: int = Field(0, ge=0)


@dataclass(frozen=True)
class PairConstraint:
    """Matched 3D points of two panoramas (planar, in the stated map frame)."""

    a: int
    b: int
    points_a: np.ndarray  # (k, 2)
    points_b: np.ndarray  # (k, 2)


@dataclass(frozen=True)
class Anchor:
    """One survey frame: its pose estimated against panorama ``panorama`` and its RTK truth."""

    panorama: int
    estimated_xy: np.ndarray
    estimated_yaw: float
    true_xy: np.ndarray
    true_yaw: float
    sigma_m: float
    sigma_rad: float


@dataclass
class RefineResult:
    """Corrections ``(P, 3)`` (δx, δy, ε rad), their ``(P, 3, 3)`` covariance, and how they were found."""

    corrections: np.ndarray
    covariance: np.ndarray
    n_pairs: int
    n_point_pairs: int
    n_anchors: int
    cost: float
    iterations: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self, ids: list[str]) -> dict[str, Any]:
        shift = np.linalg.norm(self.corrections[:, :2], axis=1)
        turn = np.degrees(np.abs(self.corrections[:, 2]))
        sigma_m = np.sqrt(np.maximum(np.linalg.eigvalsh(self.covariance[:, :2, :2])[:, -1], 0.0))
        sigma_deg = np.degrees(np.sqrt(np.maximum(self.covariance[:, 2, 2], 0.0)))
        return {
            "panoramas": len(ids),
            "pairs": self.n_pairs,
            "point_pairs": self.n_point_pairs,
            "anchors": self.n_anchors,
            "iterations": self.iterations,
            "final_cost": round(self.cost, 4),
            "correction_median_m": round(float(np.median(shift)), 3),
            "correction_max_m": round(float(np.max(shift)), 3),
            "correction_median_deg": round(float(np.median(turn)), 3),
            "correction_max_deg": round(float(np.max(turn)), 3),
            "sigma_median_m": round(float(np.median(sigma_m)), 3),
            "sigma_max_m": round(float(np.max(sigma_m)), 3),
            "sigma_median_deg": round(float(np.median(sigma_deg)), 3),
            "sigma_max_deg": round(float(np.max(sigma_deg)), 3),
            **self.info,
        }


def _rotate(points: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    x, y = points[..., 0], points[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def _panorama_features(bundle: MapBundle, p: int, cfg: RefineConfig) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors float32 (n, 128), points (n, 3)) of panorama ``p``'s rectified (and virtual) views."""
    views = bundle.views_of_panorama(p)
    if not cfg.virtual_views:
        views = views[np.asarray(bundle.views.kind)[views] == ViewKind.RECTIFIED]
    batch = bundle.features_batch(views)
    keep = np.isfinite(batch.points_map[:, 0]) & (batch.features.kind == FeatureKind.SIFT)
    rows = np.flatnonzero(keep)
    if len(rows) > cfg.max_features:
        rows = rows[np.argsort(-batch.features.response[rows], kind="stable")[: cfg.max_features]]
    return batch.features.descriptors[rows].astype(np.float32), np.asarray(batch.points_map[rows], float)


def _rigid_ransac(
    a: np.ndarray,
    b: np.ndarray,
    cfg: RefineConfig,
    rng: np.random.Generator,
    max_shift_m: float,
    max_turn_rad: float,
) -> np.ndarray | None:
    """Inlier mask of the planar rigid motion most point pairs (a_k -> b_k) agree on, among the
    motions the two panoramas' stated uncertainties make plausible (repeated façades match far off)."""
    n = len(a)
    if n < cfg.min_inliers:
        return None
    best: np.ndarray | None = None
    for _ in range(cfg.ransac_iterations):
        i, j = rng.choice(n, 2, replace=False)
        da, db = a[j] - a[i], b[j] - b[i]
        if np.linalg.norm(da) < 1.0 or abs(np.linalg.norm(da) - np.linalg.norm(db)) > cfg.ransac_threshold_m:
            continue
        angle = (math.atan2(db[1], db[0]) - math.atan2(da[1], da[0]) + math.pi) % (2 * math.pi) - math.pi
        if abs(angle) > max_turn_rad:
            continue
        moved = _rotate(a - a[i], angle) + b[i]
        # The shift the motion implies at the first panorama's points' centroid.
        if np.linalg.norm(np.mean(moved - a, axis=0)) > max_shift_m:
            continue
        inliers = np.linalg.norm(moved - b, axis=1) <= cfg.ransac_threshold_m
        if best is None or inliers.sum() > best.sum():
            best = inliers
    if best is None or best.sum() < cfg.min_inliers:
        return None
    return best


def _ratio_matches(a: np.ndarray, b: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``a`` and ``b`` whose nearest neighbour (exact L2, faiss) passes Lowe's ratio test."""
    index = faiss.IndexFlatL2(b.shape[1])
    index.add(np.ascontiguousarray(b, dtype=np.float32))
    distances, neighbours = index.search(np.ascontiguousarray(a, dtype=np.float32), 2)
    # faiss returns squared distances: the ratio test on distances is ratio² on them.
    ok = (neighbours[:, 1] >= 0) & (distances[:, 0] < ratio**2 * distances[:, 1])
    rows = np.flatnonzero(ok)
    return rows, neighbours[rows, 0].astype(np.int64)


@dataclass
class PairMatches:
    """The pair constraints of a bundle and how they were found: ``cache`` maps every candidate
    pair's key (:func:`pair_key`) to its point pairs ``(points_a, points_b)`` in the order of the
    sorted content ids, or None where the two panoramas do not agree (it is written into the refined
    bundle for the next refinement)."""

    constraints: list[PairConstraint]
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None]
    computed: int
    reused: int


def panorama_content_id(
    descriptors: np.ndarray, points: np.ndarray, centre: np.ndarray, sigma_m: float, sigma_rad: float
) -> str:
    """Identity of what a panorama brings to matching: its features with 3D points (as the map states
    them), its stated centre and uncertainty. The same panorama in another build of the same set has
    the same id; a re-stated pose or another feature extraction gives another."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(descriptors, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(points, dtype=np.float64).tobytes())
    digest.update(json.dumps([np.round(centre, 3).tolist(), round(sigma_m, 6), round(sigma_rad, 8)]).encode())
    return digest.hexdigest()[:24]


def pair_key(content_a: str, content_b: str, cfg: RefineConfig) -> str:
    """Cache key of a panorama pair: both content ids (in sorted order) and the matching settings."""
    settings = {name: getattr(cfg, name) for name in _MATCH_FIELDS}
    text = json.dumps([sorted((content_a, content_b)), settings], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _match_pair(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    shift: float,
    turn: float,
    cfg: RefineConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Agreeing planar point pairs of two panoramas' features, or None."""
    (da, pa), (db, pb) = a, b
    if len(da) < cfg.min_inliers or len(db) < cfg.min_inliers:
        return None
    ia, ib = _ratio_matches(da, db, cfg.ratio)
    if len(ia) < cfg.min_inliers:
        return None
    same_height = np.abs(pa[ia, 2] - pb[ib, 2]) <= cfg.max_height_difference_m
    ia, ib = ia[same_height], ib[same_height]
    inliers = _rigid_ransac(pa[ia, :2], pb[ib, :2], cfg, rng, shift, turn)
    if inliers is None:
        return None
    rows = np.flatnonzero(inliers)
    if len(rows) > cfg.max_pairs_per_edge:
        rows = rng.choice(rows, cfg.max_pairs_per_edge, replace=False)
    return pa[ia[rows], :2], pb[ib[rows], :2]


def pair_constraints(
    bundle: MapBundle,
    cfg: RefineConfig,
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> PairMatches:
    """Matched 3D point pairs between every two panoramas closer than ``max_pair_distance_m``;
    pairs whose key is in ``cache`` (:func:`read_pair_cache`) are taken from it, not matched again."""
    cache = cache or {}
    centres = np.asarray(bundle.panorama_positions, dtype=float)
    records = bundle.panorama_records
    sigma_m = np.array([max(r.position_sigma_m or 0.0, 0.25) for r in records])
    sigma_rad = np.radians([max(r.heading_sigma_deg or 0.0, 0.5) for r in records])
    features = [_panorama_features(bundle, p, cfg) for p in range(len(centres))]
    content = [
        panorama_content_id(d, x, centres[p], float(sigma_m[p]), float(sigma_rad[p]))
        for p, (d, x) in enumerate(features)
    ]
    out = PairMatches([], {}, 0, 0)
    n = len(centres)
    for a in range(n):
        for b in range(a + 1, n):
            distance = float(np.linalg.norm(centres[a, :2] - centres[b, :2]))
            if distance > cfg.max_pair_distance_m:
                continue
            key = pair_key(content[a], content[b], cfg)
            swapped = content[a] > content[b]  # the cache holds the pair in sorted content order
            if key in cache:
                stored = cache[key]
                found = None if stored is None else ((stored[1], stored[0]) if swapped else stored)
                out.reused += 1
            else:
                # Plausible relative motions: within cfg.max_sigmas of the two stated uncertainties
                # (the heading error also shifts the points, by up to the distance times the turn).
                turn = cfg.max_sigmas * math.hypot(sigma_rad[a], sigma_rad[b])
                shift = cfg.max_sigmas * math.hypot(sigma_m[a], sigma_m[b]) + turn * (distance + 20.0)
                # Each pair its own seeded generator: its result does not depend on the other pairs.
                rng = np.random.default_rng([cfg.seed, int(key[:15], 16)])
                found = _match_pair(features[a], features[b], shift, turn, cfg, rng)
                out.computed += 1
            out.cache[key] = None if found is None else ((found[1], found[0]) if swapped else found)
            if found is not None:
                out.constraints.append(PairConstraint(a, b, found[0], found[1]))
                logger.debug("panoramas %d-%d: %d agreeing point pairs", a, b, len(found[0]))
    logger.info(
        "%d panorama pairs: %d matched, %d reused", out.computed + out.reused, out.computed, out.reused
    )
    return out


def read_pair_cache(bundle: MapBundle) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """The pair cache a refined bundle carries (empty for a bundle never refined)."""
    if not bundle.bundle.has(f"{PAIR_CACHE_NAME}.json"):
        return {}
    entries = bundle.bundle.json(PAIR_CACHE_NAME)
    points = np.asarray(bundle.bundle.array(PAIR_POINTS_NAME), dtype=np.float64)
    where = bundle.path / f"{PAIR_CACHE_NAME}.json"
    if points.ndim != 2 or points.shape[1] != 4:
        raise RefineError(
            f"{bundle.path / PAIR_POINTS_NAME}.npy: expected (K, 4) point pairs, got {points.shape}"
        )
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    if not isinstance(entries, list):
        raise RefineError(f"{where}: expected a list of pair entries")
    for i, entry in enumerate(entries):
        try:
            key, start, end = str(entry["key"]), int(entry["start"]), int(entry["end"])
        except (TypeError, KeyError, ValueError):
            raise RefineError(f"{where}: entry {i} needs key, start and end") from None
        if not 0 <= start <= end <= len(points):
            raise RefineError(
                f"{where}: entry {i}: rows [{start}, {end}) outside the {len(points)} point pairs"
            )
        cache[key] = None if start == end else (points[start:end, :2].copy(), points[start:end, 2:].copy())
    return cache


def _pair_cache_arrays(
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None],
) -> tuple[list[dict[str, Any]], np.ndarray]:
    entries, rows = [], []
    start = 0
    for key, found in sorted(cache.items()):
        count = 0 if found is None else len(found[0])
        if found is not None:
            rows.append(np.column_stack(found))
        entries.append({"key": key, "start": start, "end": start + count})
        start += count
    return entries, (np.concatenate(rows) if rows else np.zeros((0, 4)))


def solve_pose_graph(
    centres: np.ndarray,
    sigma_m: np.ndarray,
    sigma_rad: np.ndarray,
    pairs: list[PairConstraint],
    anchors: list[Anchor],
    cfg: RefineConfig,
) -> RefineResult:
    """Corrections of every panorama (module docstring, step 3)."""
    centres = np.asarray(centres, dtype=float)[:, :2]
    n = len(centres)
    sig_m = np.maximum(np.asarray(sigma_m, dtype=float), _EXACT_SIGMA)
    sig_r = np.maximum(np.asarray(sigma_rad, dtype=float), _EXACT_SIGMA)
    # Metadata errors of nearby panoramas are correlated (a capture car's drift): the prior's
    # correlation (1 - ρ) δ_ij + ρ exp(-d_ij / L), whitened once by its Cholesky factor.
    distance = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    rho = cfg.prior_correlation
    correlation = (1.0 - rho) * np.eye(n) + rho * np.exp(-distance / cfg.prior_correlation_m)
    whiten = np.linalg.inv(np.linalg.cholesky(correlation))
    # Flatten the point pairs: panorama indices and offsets from their centres.
    pa = np.concatenate([np.full(len(c.points_a), c.a) for c in pairs]) if pairs else np.zeros(0, int)
    pb = np.concatenate([np.full(len(c.points_b), c.b) for c in pairs]) if pairs else np.zeros(0, int)
    oa = np.concatenate([c.points_a for c in pairs]) - centres[pa] if pairs else np.zeros((0, 2))
    ob = np.concatenate([c.points_b for c in pairs]) - centres[pb] if pairs else np.zeros((0, 2))
    k = len(pa)
    an_p = np.array([x.panorama for x in anchors], dtype=int)
    an_off = np.array([x.estimated_xy - centres[x.panorama] for x in anchors]).reshape(-1, 2)
    an_true = np.array([x.true_xy - centres[x.panorama] for x in anchors]).reshape(-1, 2)
    an_dyaw = np.array([x.true_yaw - x.estimated_yaw for x in anchors])
    an_dyaw = (an_dyaw + np.pi) % (2 * np.pi) - np.pi
    an_sm = np.array([x.sigma_m for x in anchors])
    an_sr = np.array([x.sigma_rad for x in anchors])
    m = len(anchors)

    def transform(offsets: np.ndarray, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        return _rotate(offsets, x[idx, 2]) + x[idx, :2]

    def residuals(flat: np.ndarray) -> np.ndarray:
        x = flat.reshape(n, 3)
        prior = (whiten @ np.column_stack([x[:, 0] / sig_m, x[:, 1] / sig_m, x[:, 2] / sig_r])).reshape(-1)
        # Both points expressed from the same origin: T_a(a) - T_b(b), a and b relative to their centres.
        diff = transform(oa, pa, x) + centres[pa] - transform(ob, pb, x) - centres[pb]
        point = (diff / cfg.point_sigma_m).reshape(-1)
        moved = transform(an_off, an_p, x) - an_true
        anchor_pos = (moved / an_sm[:, None]).reshape(-1)
        anchor_yaw = (x[an_p, 2] - an_dyaw) / an_sr
        return np.concatenate([prior, point, anchor_pos, anchor_yaw])

    # Sparsity: a prior row touches one dimension of the panoramas up to its own (the whitening is
    # lower triangular), a point pair its two panoramas, an anchor its one.
    rows, cols = [], []
    for i in range(n):
        for d in range(3):
            for p in range(i + 1):
                rows.append(3 * i + d)
                cols.append(3 * p + d)
    base = 3 * n
    for i in range(k):
        for r in (base + 2 * i, base + 2 * i + 1):
            for p in (pa[i], pb[i]):
                rows += [r] * 3
                cols += [3 * p, 3 * p + 1, 3 * p + 2]
    base += 2 * k
    for i in range(m):
        for r in (base + 2 * i, base + 2 * i + 1):
            rows += [r] * 3
            cols += [3 * an_p[i], 3 * an_p[i] + 1, 3 * an_p[i] + 2]
    base += 2 * m
    for i in range(m):
        rows.append(base + i)
        cols.append(3 * an_p[i] + 2)
    sparsity = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(base + m, 3 * n)).tocsr()
    try:
        solution = least_squares(
            residuals,
            np.zeros(3 * n),
            jac_sparsity=sparsity,
            loss="soft_l1",
            f_scale=3.0,
            method="trf",
            x_scale="jac",
            max_nfev=cfg.max_nfev,
            ftol=1e-6,
            xtol=1e-6,
        )
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise RefineError(f"map refinement failed: {exc}") from None
    if not solution.success or not np.all(np.isfinite(solution.x)):
        raise RefineError(
            f"map refinement did not converge after {solution.nfev} evaluations "
            f"(status {solution.status}: {solution.message}); nothing was written"
        )
    jac = solution.jac
    normal = (jac.T @ jac).toarray() if scipy.sparse.issparse(jac) else jac.T @ jac
    try:
        cov = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        raise RefineError("map refinement: the corrections are not determined (singular system)") from None
    blocks = np.array([cov[3 * p : 3 * p + 3, 3 * p : 3 * p + 3] for p in range(n)])
    return RefineResult(
        corrections=solution.x.reshape(n, 3),
        covariance=blocks,
        n_pairs=len(pairs),
        n_point_pairs=k,
        n_anchors=m,
        cost=float(solution.cost),
        iterations=int(solution.nfev),
    )


def frame_anchors(
    estimates: Sequence[PoseEstimate], at: GroundTruthAtStamps, pano_of_view: np.ndarray, cfg: RefineConfig
) -> list[Anchor]:
    """The anchors among a survey drive's estimates (``at``: its RTK truth at their stamps)."""
    anchors = []
    for k, estimate in enumerate(estimates):
        support = estimate.info.get("views", [])
        # Only a PnP pose is relative to its panoramas' 3D points; the essential-matrix fallback
        # (panoramas without depth) triangulates from bearings and says nothing reliable about one
        # panorama's centre (on realistic it moved a panorama without depth 3 m the wrong way).
        if (
            estimate.info.get("method") != "pnp"
            or not support
            or not at.valid[k]
            or not np.isfinite(at.yaw[k])
        ):
            continue
        counts: dict[int, int] = {}
        for view, count in support:
            p = int(pano_of_view[int(view)])
            counts[p] = counts.get(p, 0) + int(count)
        p, best = max(counts.items(), key=lambda item: item[1])
        if best < cfg.anchor_min_share * sum(counts.values()):
            continue
        cov = estimate.covariance
        anchors.append(
            Anchor(
                p,
                np.asarray(estimate.position[:2], dtype=float),
                float(estimate.yaw),
                np.asarray(at.positions[k, :2], dtype=float),
                float(at.yaw[k]),
                max(cfg.anchor_sigma_m, float(np.sqrt(max(cov[0, 0], cov[1, 1])))),
                max(math.radians(cfg.anchor_yaw_sigma_deg), float(np.sqrt(cov[5, 5]))),
            )
        )
    return anchors


def drive_anchors(bundle: MapBundle, drive_dir: str | Path, cfg: RefineConfig) -> list[Anchor]:
    """Anchors from a survey drive with RTK (module docstring, step 4)."""
    from geoloc_ros.evaluation.groundtruth import drive_ground_truth
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.localize.localizer import Localizer
    from geoloc_ros.pipelines.localize_drive import localize_drive

    drive = DriveBag(drive_dir)
    truth = drive_ground_truth(drive, bundle.origin)
    # The frame's own noise only: the map's stated uncertainty is what the anchor measures.
    config = cfg.localizer.model_copy(
        update={"covariance": cfg.localizer.covariance.model_copy(update={"map_uncertainty": False})}
    )
    localizer = Localizer(bundle, config, drive.mounting, drive.camera)
    result = localize_drive(localizer, drive)
    estimates = result.estimates
    at = truth.at([e.stamp_ns for e in estimates])
    anchors = frame_anchors(estimates, at, np.asarray(bundle.views.pano_index), cfg)
    logger.info("%s: %d anchors from %d localized frames", drive_dir, len(anchors), len(result.estimates))
    return anchors


def refine_bundle(
    bundle_dir: str | Path,
    out_dir: str | Path,
    drives: list[str | Path] | None = None,
    config: RefineConfig | None = None,
    overwrite: bool = False,
    reuse: list[str | Path] | None = None,
) -> dict[str, Any]:
    """Refine ``bundle_dir``'s panorama poses into the new bundle ``out_dir``; returns the summary.

    ``reuse``: earlier refined bundles (e.g. of the set before panoramas were added) whose pair
    cache is used where the same panoramas meet again; the input's own cache is always used."""
    cfg = config or RefineConfig()
    src, out = Path(bundle_dir), Path(out_dir)
    if out.resolve() == src.resolve():
        raise RefineError(f"{out}: refinement writes a new bundle; the input {src} is never modified")
    if out.exists() and not overwrite:
        raise RefineError(f"output {out} already exists (pass --overwrite to replace it)")
    bundle = MapBundle.open(src)
    records = bundle.panorama_records
    sigma_m = np.array([r.position_sigma_m or 0.0 for r in records])
    sigma_rad = np.radians([r.heading_sigma_deg or 0.0 for r in records])
    if not np.any(sigma_m > 0) and not np.any(sigma_rad > 0):
        logger.warning("%s states exact panorama poses: they are held (give --pose-sigma at build)", src)
    cache = read_pair_cache(bundle)
    for previous in reuse or []:
        cache.update(read_pair_cache(MapBundle.open(previous)))
    pairs = pair_constraints(bundle, cfg, cache)
    anchors = [a for d in drives or [] for a in drive_anchors(bundle, d, cfg)]
    result = solve_pose_graph(bundle.panorama_positions, sigma_m, sigma_rad, pairs.constraints, anchors, cfg)
    summary = result.summary(bundle.panorama_ids)
    summary["pairs_matched"] = pairs.computed
    summary["pairs_reused"] = pairs.reused
    summary["drives"] = [str(Path(d)) for d in drives or []]
    write_refined_bundle(bundle, out, result, summary, pairs.cache, overwrite=overwrite)
    return summary


def write_refined_bundle(
    bundle: MapBundle,
    out: Path,
    result: RefineResult,
    summary: dict[str, Any],
    pair_cache: dict[str, tuple[np.ndarray, np.ndarray] | None],
    overwrite: bool = False,
) -> None:
    """The refined bundle (module docstring, step 5); everything else is copied unchanged."""
    centres = np.asarray(bundle.panorama_positions, dtype=float)
    corr = result.corrections
    views = bundle.views
    pano = np.asarray(views.pano_index)

    def move(points: np.ndarray, p: np.ndarray) -> np.ndarray:
        out_points = np.array(points, dtype=np.float64, copy=True)
        out_points[:, :2] = (
            _rotate(out_points[:, :2] - centres[p, :2], corr[p, 2]) + centres[p, :2] + corr[p, :2]
        )
        return out_points

    def turn(angle: np.ndarray) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        rz = np.zeros((len(angle), 3, 3))
        rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1.0
        return rz

    t = np.array(views.T_map_optical, dtype=np.float64, copy=True)
    t[:, :3, :3] = np.einsum("nij,njk->nik", turn(corr[pano, 2]), t[:, :3, :3])
    t[:, :3, 3] = move(t[:, :3, 3], pano)
    position = move(np.asarray(views.position, dtype=float), pano)
    tile_size = float(bundle.manifest.get("tiles", {}).get("tile_size_m", 250.0))
    old_tiles = np.floor(np.asarray(views.position)[:, :2] / tile_size)
    if np.any(np.floor(position[:, :2] / tile_size) != old_tiles):
        raise RefineError(
            "the refined poses move views into other tiles: rebuild the map from a panorama set with "
            "the refined poses instead"
        )
    feature_pano = np.repeat(pano, np.diff(np.asarray(bundle.feature_offsets)))
    points = np.asarray(bundle.bundle.array("features/points_map"))
    moved_points = move(points, feature_pano).astype(np.float32)
    moved_points[~np.isfinite(points[:, 0])] = np.nan
    new_centres = centres.copy()
    new_centres[:, :2] += corr[:, :2]
    records = []
    for k, record in enumerate(bundle.panorama_records):
        lat, lon, alt = enu_to_geodetic(new_centres[k], bundle.origin)
        cov = result.covariance[k]
        records.append(
            record.model_copy(
                update={
                    "lat": float(lat),
                    "lon": float(lon),
                    "alt": float(alt) if record.alt is not None else None,
                    "heading_deg": float((record.heading_deg - math.degrees(corr[k, 2])) % 360.0),
                    "position_sigma_m": worst_horizontal_sigma(cov),
                    "heading_sigma_deg": float(math.degrees(math.sqrt(max(cov[2, 2], 0.0)))),
                }
            ).to_json()
        )
    replaced = {
        "views/T_map_optical.npy": t,
        "views/position.npy": position,
        "features/points_map.npy": moved_points,
        f"{PANORAMA_POSITIONS}.npy": new_centres,
    }
    manifest = bundle.manifest
    corrections = {
        r.id: {
            "dx_m": round(float(corr[k, 0]), 4),
            "dy_m": round(float(corr[k, 1]), 4),
            "dyaw_deg": round(math.degrees(float(corr[k, 2])), 4),
            "covariance": np.round(result.covariance[k], 8).tolist(),
        }
        for k, r in enumerate(bundle.panorama_records)
    }
    with BundleWriter(out, overwrite=overwrite) as writer:
        writer.copy_members(
            bundle.bundle,
            lambda rel: rel in replaced or rel == f"{PANORAMA_RECORDS}.json" or rel.startswith("refinement/"),
        )
        for rel, array in replaced.items():
            writer.add_array(rel, array)
        writer.add_json(PANORAMA_RECORDS, records)
        writer.add_json(CORRECTIONS_NAME, corrections)
        entries, points = _pair_cache_arrays(pair_cache)
        writer.add_json(PAIR_CACHE_NAME, entries)
        writer.add_array(PAIR_POINTS_NAME, points)
        metadata = bundle.bundle.metadata
        metadata["map_version"] = int(manifest.get("map_version", 1)) + 1
        metadata["refinement"] = {**summary, "refined_from": str(bundle.path)}
        writer.commit(metadata)
