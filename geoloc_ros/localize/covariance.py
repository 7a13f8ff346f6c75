"""The published covariance of a PnP pose: refinement covariance, evidence-based inflation, mounting.

Model (all 6x6 over camera centre and small rotation about the map axes, the
``PoseWithCovariance`` layout):

    Σ_camera = s² · [ w · σ̂² (JᵀWJ)⁻¹  +  B / m ],   w = (1 + (n₀ / n)²) · max(1, r₀ / r)

- ``σ̂² (JᵀWJ)⁻¹``: the refinement's covariance under independent pixel noise of the estimated
  variance σ̂² (:func:`geoloc_ros.localize.pose.refine_pose`).
- ``1 + (n₀ / n)²``: weak evidence. With few inliers ``n`` the inlier set itself is uncertain (a
  few matches that agree by chance, a small-sample σ̂, points bunched in one part of the image);
  the factor is 2 at ``n = n₀`` and tends to 1 for many inliers (``CovarianceConfig.reference_inliers``).
- ``max(1, r₀ / r)``: a low inlier ratio ``r`` (inliers over the matches of the supporting views)
  means more wrong matches that happen to fall within the threshold
  (``CovarianceConfig.reference_inlier_ratio``).
- ``B / m``: disagreement between candidates. Errors of the map are shared by the points of one
  view (its georeferencing, its depth), so points of one view do not average them out: the pose
  is re-solved from each supporting view's inliers alone, ``B`` is the sample covariance of those
  ``m`` per-view poses around the joint one, and ``B / m`` the variance it leaves in their
  combination (a random-effects model). When fewer than two views can be solved alone, ``B`` is
  unknown and the first term is multiplied by ``1 + (m₀ - 1) / max(m, 1)`` instead
  (``CovarianceConfig.reference_views``).
- ``s``: one calibration factor on standard deviations.

``n₀``, ``r₀``, ``m₀`` and ``s`` were tuned on the ``standard`` scenario so that the normalised
error is about even across inlier counts, inlier ratios and view counts and 90-99% of true
positions fall inside the published 95% ellipse (BENCHMARKS.md gives the figures).

**The map's own error** (:func:`map_covariance`): a panorama's stated pose is off by ``δ``
(horizontal, σ ``position_sigma_m`` per axis) and ``ε`` (heading, σ ``heading_sigma_deg``), and every
3D point of its views moves rigidly with it: ``X' = C_p + R_z(ε)(X - C_p) + δ``. No residual shows
this (the points of one panorama stay consistent with each other), so it is propagated to first
order through the refinement: the pose moves by ``S_p m_p`` with ``S_p = (JᵀWJ)⁻¹ Σ_{i∈p} J_iᵀ W_i
(∂uv_i/∂X)(∂X/∂m_p)``, and ``Σ_map = Σ_pq S_p C_pq S_qᵀ`` where ``C_pp = diag(σ_p², σ_p², σ_h,p²)`` and
panoramas of one frame are correlated by ``CovarianceConfig.map_correlation`` (a capture car's
drift is shared by neighbours). ``Σ_map`` is added after the calibration factor (it is a stated
uncertainty, not a fitted one). It is zero on exact maps.

**Plane-model depth** (:func:`panorama_pose_sigmas`): a Street View depth is a few planes that leave
out cars, poles and trees; its error is shared by the points of a façade, and seen from the query it
moves a panorama's points together as an error of its pose does. On a map that states a pose
uncertainty, such a panorama's position σ gets ``CovarianceConfig.plane_depth_sigma_m`` added in
quadrature (a refined map states centimetres for the pose alone).

**Depth error of the map points** (:func:`depth_covariance`): a map point is its panorama's centre
plus its depth along its bearing, ``X_i = C_p + ρ_i b_i``; an error ``δρ_i`` of that depth moves it
along the bearing, ``dX_i = b_i δρ_i``, which the query sees along its epipolar line. Through the
refinement (as for the map term) the pose moves by ``s_i δρ_i`` with ``s_i = (JᵀWJ)⁻¹ J_iᵀ W_i J_C,i b_i``,
and ``Σ_depth = Σ_i s_i s_iᵀ (σ_p ρ_i)²`` with ``σ_p`` the relative depth σ of the point's panorama
by its depth model (``CovarianceConfig.depth_error``: an exact range image ~0, a Street View plane
model several per cent, since it leaves out cars, poles and trees and its coarse grid bleeds
façades into gaps). The residuals show a depth error only across the epipolar line's component
the pose cannot absorb; with many inliers ``Σ_depth`` falls as ``1/n``, with few it dominates.
Plane-model depth errors come in clusters (all points of a tree or a car share theirs); grouping the
points into clusters (by bearing) with a shared error measured the same calibration as independent
points (BENCHMARKS.md, issue 13 fourth stop), so the model stays per point. ``Σ_depth`` is a stated
uncertainty, added after the calibration factor.

The camera covariance is then carried to ``base_link`` through the lever arm of the mounting
(:func:`base_covariance`) and a floor is added for what no residual shows (map georeferencing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.panorama_set import PanoramaRecord
from geoloc_ros.localize.config import CovarianceConfig
from geoloc_ros.localize.pose import vector_from_rotation


@dataclass(frozen=True)
class ViewSolution:
    """How far the pose solved from one view's inliers alone lies from the joint one: (dC, dθ)."""

    view: int
    deviation: np.ndarray  # (6,)
    inliers: int


def panorama_pose_sigmas(
    records: Sequence[PanoramaRecord], config: CovarianceConfig
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(position σ m, heading σ rad, map is uncertain)`` per panorama for the map term: the stated
    σ, with the plane-model depth term on a map that states any uncertainty (module docstring); all
    zero and False with ``map_uncertainty`` off or on a map stating exact poses."""
    sigma_m = np.array([r.position_sigma_m or 0.0 for r in records], dtype=float)
    sigma_rad = np.radians([r.heading_sigma_deg or 0.0 for r in records]).astype(float)
    uncertain = config.map_uncertainty and bool(np.any(sigma_m > 0) or np.any(sigma_rad > 0))
    if not uncertain:
        return sigma_m, sigma_rad, False
    plane = np.array([r.has_plane_depth for r in records], dtype=bool)
    sigma_m = np.where(plane, np.hypot(sigma_m, config.plane_depth_sigma_m), sigma_m)
    return sigma_m, sigma_rad, True


def pose_deviation(pose: Pose3D, reference: Pose3D) -> np.ndarray:
    """(dC, dθ): centre offset and the rotation about the map axes taking ``reference`` to ``pose``."""
    rotation = vector_from_rotation(pose.rotation @ reference.rotation.T)
    return np.concatenate([pose.translation - reference.translation, rotation])


def between_view_covariance(solutions: list[ViewSolution]) -> np.ndarray | None:
    """Sample covariance (6x6) of per-view poses around the joint pose; None with fewer than two."""
    if len(solutions) < 2:
        return None
    deviations = np.array([s.deviation for s in solutions])
    return np.einsum("ni,nj->ij", deviations, deviations) / (len(solutions) - 1)


def camera_covariance(
    refined_covariance: np.ndarray,
    n_inliers: int,
    inlier_ratio: float,
    n_views_solved: int,
    between_views: np.ndarray | None,
    config: CovarianceConfig,
) -> np.ndarray:
    """``Σ_camera`` of the module docstring (before the mounting and the floor)."""
    evidence = 1.0 + (config.reference_inliers / max(n_inliers, 1)) ** 2
    evidence *= max(1.0, config.reference_inlier_ratio / max(inlier_ratio, 1e-3))
    covariance = evidence * np.asarray(refined_covariance, dtype=float)
    if between_views is not None:
        covariance = covariance + between_views / max(n_views_solved, 1)
    else:
        covariance = covariance * (1.0 + (config.reference_views - 1) / max(n_views_solved, 1))
    return config.scale**2 * covariance


def depth_relative_sigmas(records: Sequence[PanoramaRecord], config: CovarianceConfig) -> np.ndarray:
    """Relative depth σ (a fraction of the range) of each panorama's map points, by its depth
    model (``CovarianceConfig.depth_error``); a panorama without depth has no map points (0)."""
    error = config.depth_error
    return np.array(
        [
            error.plane_relative_sigma
            if r.has_plane_depth
            else (error.exact_relative_sigma if r.has_depth else 0.0)
            for r in records
        ],
        dtype=float,
    )


def _normal_inverse(jacobian: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """``(JᵀWJ)⁻¹`` of the refinement (None when singular)."""
    j = np.asarray(jacobian, dtype=float).reshape(-1, 6)
    normal = np.einsum("ni,nj->ij", j * np.repeat(np.asarray(weights, dtype=float), 2)[:, None], j)
    try:
        return np.asarray(np.linalg.inv(normal + 1e-12 * np.eye(6)))
    except np.linalg.LinAlgError:
        return None


def depth_covariance(
    jacobian: np.ndarray,
    weights: np.ndarray,
    points: np.ndarray,
    origins: np.ndarray,
    relative_sigma: np.ndarray,
) -> np.ndarray:
    """``Σ_depth`` (6x6) of the module docstring: the refined pose's covariance from independent
    errors of the points' depth along their bearings from ``origins`` (n, 3) (their panoramas'
    centres), of standard deviation ``relative_sigma`` (n,) times the range. ``jacobian``
    ``(n, 2, 6)`` and ``weights`` ``(n,)`` of the refinement at its solution."""
    sigma = np.asarray(relative_sigma, dtype=float)
    if not np.any(sigma > 0):
        return np.zeros((6, 6))
    jacobian = np.asarray(jacobian, dtype=float)
    w = np.asarray(weights, dtype=float)
    normal_inv = _normal_inverse(jacobian, w)
    if normal_inv is None:
        return np.full((6, 6), np.inf)
    offset = np.asarray(points, dtype=float) - np.asarray(origins, dtype=float)
    ranges = np.linalg.norm(offset, axis=1)
    bearing = offset / np.maximum(ranges, 1e-9)[:, None]
    # As in map_sensitivities: the residuals change by J_C dX, dX = b δρ.
    d_residual = np.einsum("nij,nj->ni", jacobian[:, :, :3], bearing)  # (n, 2)
    moves = np.einsum("nij,ni->nj", jacobian, d_residual * w[:, None]) @ normal_inv.T  # (n, 6)
    scaled = moves * (sigma * ranges)[:, None]
    out = scaled.T @ scaled
    return 0.5 * (out + out.T)


def map_sensitivities(
    jacobian: np.ndarray,
    weights: np.ndarray,
    points: np.ndarray,
    panorama: np.ndarray,
    centres: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(panoramas (k,), S (k, 6, 3))``: how the refined camera pose (centre, rotation about the map
    axes) moves per unit error ``(δx, δy, ε)`` of each panorama's stated pose.

    ``jacobian`` ``(n, 2, 6)`` and ``weights`` ``(n,)`` of the refinement at its solution; ``points``
    ``(n, 3)`` the map points; ``panorama`` ``(n,)`` the panorama of each point; ``centres`` ``(P, 3)``
    the panoramas' stated centres.
    """
    jacobian = np.asarray(jacobian, dtype=float)
    w = np.asarray(weights, dtype=float)
    offset = np.asarray(points, dtype=float) - np.asarray(centres, dtype=float)[panorama]
    # dX/d(δx, δy, ε) per point: [[1, 0, -dy], [0, 1, dx], [0, 0, 0]].
    dx_dm = np.zeros((len(offset), 3, 3))
    dx_dm[:, 0, 0] = 1.0
    dx_dm[:, 1, 1] = 1.0
    dx_dm[:, 0, 2] = -offset[:, 1]
    dx_dm[:, 1, 2] = offset[:, 0]
    # The pixels depend on X - C (d uv / d X = -d uv / d C), and a Gauss-Newton step is
    # (JᵀWJ)⁻¹ JᵀW (observed - predicted): the residuals change by -d uv / d m = J_C dX/dm.
    d_residual = np.einsum("nij,njk->nik", jacobian[:, :, :3], dx_dm)  # (n, 2, 3)
    per_point = np.einsum("nij,nik->njk", jacobian, d_residual) * w[:, None, None]  # (n, 6, 3)
    panoramas, inverse = np.unique(panorama, return_inverse=True)
    grouped = np.zeros((len(panoramas), 6, 3))
    np.add.at(grouped, inverse, per_point)
    normal_inv = _normal_inverse(jacobian, w)
    if normal_inv is None:
        return panoramas, np.full((len(panoramas), 6, 3), np.inf)
    return panoramas, np.einsum("ij,pjk->pik", normal_inv, grouped)


def map_covariance(
    sensitivities: np.ndarray, position_sigma_m: np.ndarray, heading_sigma_rad: np.ndarray, correlation: float
) -> np.ndarray:
    """``Σ_map`` (6x6) of the module docstring from :func:`map_sensitivities`' ``S`` (k, 6, 3) and
    each of the k panoramas' standard deviations."""
    s = np.asarray(sensitivities, dtype=float)
    sig = np.column_stack([position_sigma_m, position_sigma_m, heading_sigma_rad]).astype(float)  # (k, 3)
    scaled = s * sig[:, None, :]  # S_p diag(σ_p)
    independent = np.einsum("pik,pjk->ij", scaled, scaled)
    shared = scaled.sum(axis=0)
    out = (1.0 - correlation) * independent + correlation * shared @ shared.T
    return 0.5 * (out + out.T)


def base_covariance(camera_pose: Pose3D, covariance: np.ndarray, t_base_optical: Pose3D) -> np.ndarray:
    """Carry a camera-pose covariance (centre, rotation about map axes) to ``base_link``.

    ``t_map_base = C + R_map_optical · t_optical_base``: a small rotation ``dθ`` of the camera moves
    the base by ``dθ × (R t)``, so ``d t_base = dC - [R t]× dθ`` while the rotation perturbation is
    shared (both frames turn together).
    """
    lever = camera_pose.rotation @ t_base_optical.inverse().translation
    skew = np.array([[0.0, -lever[2], lever[1]], [lever[2], 0.0, -lever[0]], [-lever[1], lever[0], 0.0]])
    jacobian = np.eye(6)
    jacobian[:3, 3:] = -skew
    out = jacobian @ np.asarray(covariance, dtype=float) @ jacobian.T
    return 0.5 * (out + out.T)


def with_floor(covariance: np.ndarray, config: CovarianceConfig) -> np.ndarray:
    """Add the floor variances (position and rotation) of ``config``."""
    floor = np.array(
        [config.min_position_sigma_m] * 3 + [np.radians(config.min_yaw_sigma_deg)] * 3, dtype=float
    )
    return np.asarray(covariance, dtype=float) + np.diag(floor**2)
