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

The camera covariance is then carried to ``base_link`` through the lever arm of the mounting
(:func:`base_covariance`) and a floor is added for what no residual shows (map georeferencing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import CovarianceConfig
from geoloc_ros.localize.pose import vector_from_rotation


@dataclass(frozen=True)
class ViewSolution:
    """How far the pose solved from one view's inliers alone lies from the joint one: (dC, dθ)."""

    view: int
    deviation: np.ndarray  # (6,)
    inliers: int


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
