"""Camera pose from 2D-3D matches (PnP-RANSAC + refinement) or from 2D-2D matches (essential matrix).

Poses here are camera poses ``T_map_optical`` (optical frame: x right, y down, z forward).

**PnP-RANSAC**: poselib's LO-RANSAC (P3P minimal solver, local optimisation) by default; OpenCV's
``solvePnPRansac`` with ``USAC_MAGSAC`` as an alternative (bench/bench_localize.py compares them;
poselib is several times faster at equal or better accuracy on our data). Both are seeded. poselib
publishes no aarch64 wheel (Jetson): where it is not installed, both RANSACs fall back to OpenCV's USAC
(:func:`effective_backend`), with one warning.

**Refinement** (:func:`refine_pose`): Gauss-Newton on the reprojection error with Huber weights,
parametrised by the camera centre ``C`` in ``map`` and a small rotation ``dθ`` about the **map**
axes (``R ← exp([dθ]×) R``), so its normal matrix directly gives the covariance in the layout of
``PoseWithCovariance`` (x, y, z, rot x, rot y, rot z): ``σ̂² (JᵀWJ)⁻¹`` with ``σ̂²`` the weighted
residual variance (``2n - 6`` degrees of freedom).

**Essential-matrix fallback** (:func:`relative_pose`, :func:`intersect_bearings`): a view without
depth still gives the query's rotation and the direction towards the query's centre; the bearings
from two or more views with distinct centres intersect at the query's position.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.stats import chi2

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import PoseConfig

try:  # no aarch64 wheel: optional there (setup.py), OpenCV's USAC replaces it
    import poselib
except ImportError:  # pragma: no cover - depends on the platform
    poselib = None

logger = logging.getLogger(__name__)

_MIN_DEPTH_M = 0.1
# Bearings intersected from centres closer than this have no baseline: they fix no position.
_MIN_BASELINE_M = 0.5


@functools.cache
def _warn_poselib_missing() -> None:
    logger.warning("poselib is not installed (no wheel for this platform): using OpenCV USAC_MAGSAC")


def effective_backend(config: PoseConfig) -> str:
    """The RANSAC backend that runs: ``config.backend``, or ``opencv`` where poselib is not installed."""
    if config.backend == "poselib" and poselib is None:
        _warn_poselib_missing()
        return "opencv"
    return config.backend


def rotation_from_vector(rotvec: np.ndarray) -> np.ndarray:
    """3x3 rotation of a rotation vector (Rodrigues; OpenCV's, far cheaper per call than scipy's)."""
    matrix, _ = cv2.Rodrigues(np.asarray(rotvec, dtype=np.float64).reshape(3, 1))
    return np.asarray(matrix)


def vector_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Rotation vector of a 3x3 rotation (inverse of :func:`rotation_from_vector`)."""
    vector, _ = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64))
    return np.asarray(vector).reshape(3)


def _poselib_camera(camera: PinholeCamera) -> dict[str, object]:
    return {
        "model": "PINHOLE",
        "width": camera.width,
        "height": camera.height,
        "params": [camera.fx, camera.fy, camera.cx, camera.cy],
    }


def _skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices of (N, 3) vectors: (N, 3, 3) with ``skew(a) @ b = a × b``."""
    out = np.zeros((*v.shape[:-1], 3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def project(pose: Pose3D, points_map: np.ndarray, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(N, 2)`` and depths ``(N,)`` of map points seen by a camera at ``pose`` (T_map_optical)."""
    optical = np.einsum("ni,ij->nj", np.asarray(points_map, dtype=float) - pose.translation, pose.rotation)
    z = optical[:, 2]
    safe = np.where(np.abs(z) > 1e-9, z, 1e-9)
    uv = np.column_stack(
        [camera.fx * optical[:, 0] / safe + camera.cx, camera.fy * optical[:, 1] / safe + camera.cy]
    )
    return uv, z


@dataclass(frozen=True)
class RansacResult:
    pose: Pose3D  # T_map_optical
    inliers: np.ndarray  # (N,) bool over the input correspondences
    iterations: int


def pnp_ransac(
    points_2d: np.ndarray, points_3d: np.ndarray, camera: PinholeCamera, config: PoseConfig
) -> RansacResult | None:
    """Robust camera pose from pixel / map-point correspondences; None when no model is found."""
    uv = np.ascontiguousarray(points_2d, dtype=np.float64)
    xyz = np.ascontiguousarray(points_3d, dtype=np.float64)
    if len(uv) < 4:
        return None
    if effective_backend(config) == "poselib":
        ransac = {
            "max_reproj_error": config.reprojection_threshold_px,
            "max_iterations": config.max_iterations,
            "min_iterations": config.min_iterations,
            "success_prob": config.confidence,
            "seed": config.seed,
        }
        # The refinement is ours (refine_pose); poselib's own stays short.
        solution, info = poselib.estimate_absolute_pose(
            uv, xyz, _poselib_camera(camera), ransac, {"max_iterations": 5}
        )
        inliers = np.asarray(info["inliers"], dtype=bool)
        if inliers.sum() < 4:
            return None
        # poselib maps map points into the camera: x_cam = R X + t.
        pose = Pose3D(solution.R, solution.t).inverse()
        return RansacResult(pose, inliers, int(info["iterations"]))
    cv2.setRNGSeed(config.seed)
    ok, rvec, tvec, index = cv2.solvePnPRansac(
        xyz,
        uv,
        camera.K,
        None,
        iterationsCount=config.max_iterations,
        reprojectionError=config.reprojection_threshold_px,
        confidence=config.confidence,
        flags=cv2.USAC_MAGSAC,
    )
    if not ok or index is None or len(index) < 4:
        return None
    inliers = np.zeros(len(uv), dtype=bool)
    inliers[np.asarray(index).reshape(-1)] = True
    rotation, _ = cv2.Rodrigues(rvec)
    pose = Pose3D(rotation, np.asarray(tvec, dtype=float).reshape(3)).inverse()
    return RansacResult(pose, inliers, config.max_iterations)


@dataclass(frozen=True)
class RefinedPose:
    """Result of :func:`refine_pose`. ``covariance`` (6x6 over camera centre and rotation about the
    map axes) is ``σ̂² (JᵀWJ)⁻¹`` with ``σ̂ = sigma_px``, before any calibration or inflation."""

    pose: Pose3D  # T_map_optical
    covariance: np.ndarray
    sigma_px: float
    residuals_px: np.ndarray  # (N,) reprojection error norms at the solution
    in_front: np.ndarray  # (N,) bool: point in front of the camera
    jacobian: np.ndarray  # (N, 2, 6) at the solution
    residuals: np.ndarray  # (N, 2) observed - predicted pixels at the solution
    weights: np.ndarray  # (N,) Huber weights at the solution

    def subset_step(self, rows: np.ndarray) -> np.ndarray | None:
        """(dC, dθ) towards the pose the correspondences ``rows`` alone prefer: one Gauss-Newton
        step from this solution (it is close), from the Jacobian already at hand. None when they do
        not constrain all six degrees of freedom."""
        normal, gradient = _normal_equations(self.jacobian[rows], self.residuals[rows], self.weights[rows])
        if np.linalg.cond(normal) > 1e12:
            return None
        return np.linalg.solve(normal, gradient)


def _jacobian(
    pose: Pose3D, points: np.ndarray, camera: PinholeCamera
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted pixels (N, 2), depths (N,) and the Jacobian (N, 2, 6) of the pixels with respect to
    (camera centre, rotation about the map axes)."""
    rt = pose.rotation.T
    relative = points - pose.translation
    optical = np.einsum("ni,ij->nj", relative, pose.rotation)
    x, y, z = optical[:, 0], optical[:, 1], np.maximum(optical[:, 2], _MIN_DEPTH_M)
    uv = np.column_stack([camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy])
    d_uv = np.zeros((len(points), 2, 3))
    d_uv[:, 0, 0] = camera.fx / z
    d_uv[:, 0, 2] = -camera.fx * x / z**2
    d_uv[:, 1, 1] = camera.fy / z
    d_uv[:, 1, 2] = -camera.fy * y / z**2
    # einsum, not stacked matmul: tiny products are slow through a busy multithreaded BLAS.
    d_rotation = np.einsum("ij,njk->nik", rt, _skew(relative))
    jacobian = np.concatenate(
        [np.einsum("nij,jk->nik", d_uv, -rt), np.einsum("nij,njk->nik", d_uv, d_rotation)], axis=2
    )
    return uv, optical[:, 2], jacobian


def _normal_equations(
    jacobian: np.ndarray, residuals: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    j = jacobian.reshape(-1, 6)
    w = np.repeat(weights, 2)
    jw = j * w[:, None]
    return np.einsum("ni,nj->ij", jw, j), np.einsum("ni,n->i", jw, residuals.reshape(-1))


def refine_pose(
    pose: Pose3D,
    points_2d: np.ndarray,
    points_3d: np.ndarray,
    camera: PinholeCamera,
    iterations: int,
    huber_px: float,
    min_sigma_px: float,
) -> RefinedPose:
    """Gauss-Newton with Huber weights from ``pose`` (see the module docstring)."""
    uv_obs = np.asarray(points_2d, dtype=float)
    points = np.asarray(points_3d, dtype=float)
    n = len(points)
    if n < 4:
        raise ValueError(f"refine_pose needs at least 4 correspondences, got {n}")
    rotation, centre = pose.rotation.copy(), pose.translation.copy()
    for _ in range(iterations):
        current = Pose3D(rotation, centre)
        uv, _, jacobian = _jacobian(current, points, camera)
        residuals = uv_obs - uv
        norms = np.linalg.norm(residuals, axis=1)
        weights = np.where(norms <= huber_px, 1.0, huber_px / np.maximum(norms, 1e-12))
        normal, gradient = _normal_equations(jacobian, residuals, weights)
        try:
            step = np.linalg.solve(normal + 1e-9 * np.eye(6), gradient)
        except np.linalg.LinAlgError:
            break
        centre = centre + step[:3]
        rotation = rotation_from_vector(step[3:]) @ rotation
        if np.linalg.norm(step[:3]) < 1e-6 and np.linalg.norm(step[3:]) < 1e-8:
            break
    final = Pose3D(rotation, centre)
    uv, depth, jacobian = _jacobian(final, points, camera)
    residuals = uv_obs - uv
    norms = np.linalg.norm(residuals, axis=1)
    weights = np.where(norms <= huber_px, 1.0, huber_px / np.maximum(norms, 1e-12))
    normal, _ = _normal_equations(jacobian, residuals, weights)
    dof = max(2 * n - 6, 1)
    sigma = max(float(np.sqrt(np.sum(weights * norms**2) / dof)), min_sigma_px)
    try:
        covariance = sigma**2 * np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        covariance = np.full((6, 6), np.inf)
    covariance = 0.5 * (covariance + covariance.T)
    return RefinedPose(final, covariance, sigma, norms, depth > _MIN_DEPTH_M, jacobian, residuals, weights)


# --------------------------------------------------------------------------- essential fallback
@dataclass(frozen=True)
class RelativePose:
    """The query camera seen from one reference view: its rotation in ``map`` and the unit direction
    from the view's centre towards the query's centre (scale unknown)."""

    view: int
    reference_centre: np.ndarray  # (3,) map
    rotation_map_query: np.ndarray  # (3, 3) R_map_optical of the query
    direction_map: np.ndarray  # (3,) unit
    inliers: int


def relative_pose(
    query_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_pose: Pose3D,
    view: int,
    camera: PinholeCamera,
    config: PoseConfig,
) -> RelativePose | None:
    """Essential-matrix RANSAC between one reference view and the query (both in ``camera``)."""
    if len(query_xy) < config.essential_min_inliers:
        return None
    reference = np.ascontiguousarray(reference_xy, dtype=np.float64)
    query = np.ascontiguousarray(query_xy, dtype=np.float64)
    if effective_backend(config) == "poselib":
        ransac = {
            "max_epipolar_error": config.essential_threshold_px,
            "max_iterations": config.essential_max_iterations,
            "min_iterations": min(config.min_iterations, config.essential_max_iterations),
            "success_prob": config.confidence,
            "seed": config.seed,
        }
        cam = _poselib_camera(camera)
        # poselib: x_query = R x_reference + t, with |t| = 1.
        solution, info = poselib.estimate_relative_pose(reference, query, cam, cam, ransac, {})
        inliers = int(info["num_inliers"])
        r_query_ref, t_query_ref = np.asarray(solution.R), np.asarray(solution.t)
    else:
        found = _essential_opencv(reference, query, camera, config)
        if found is None:
            return None
        r_query_ref, t_query_ref, inliers = found
    if inliers < config.essential_min_inliers:
        return None
    centre_in_reference = -r_query_ref.T @ t_query_ref
    norm = float(np.linalg.norm(centre_in_reference))
    if norm < 1e-9:
        return None
    return RelativePose(
        view=view,
        reference_centre=reference_pose.translation.copy(),
        rotation_map_query=reference_pose.rotation @ r_query_ref.T,
        direction_map=reference_pose.rotation @ centre_in_reference / norm,
        inliers=inliers,
    )


def _essential_opencv(
    reference: np.ndarray, query: np.ndarray, camera: PinholeCamera, config: PoseConfig
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """OpenCV's USAC essential matrix + cheirality: ``(R, t, inliers)`` with x_query = R x_reference + t."""
    cv2.setRNGSeed(config.seed)
    essential, mask = cv2.findEssentialMat(
        reference,
        query,
        camera.K,
        method=cv2.USAC_MAGSAC,
        prob=config.confidence,
        threshold=config.essential_threshold_px,
        maxIters=config.essential_max_iterations,
    )
    if essential is None or essential.shape != (3, 3) or mask is None:
        return None
    inliers, rotation, translation, _ = cv2.recoverPose(
        essential, reference, query, camera.K, mask=mask.copy()
    )
    return np.asarray(rotation), np.asarray(translation, dtype=float).reshape(3), int(inliers)


@dataclass(frozen=True)
class BearingFix:
    """Query camera centre where the bearings of several views meet, with its 3x3 covariance."""

    centre: np.ndarray
    covariance: np.ndarray
    ranges_m: np.ndarray  # distance from each view's centre


def intersect_bearings(relatives: list[RelativePose], bearing_sigma_rad: float) -> BearingFix | None:
    """Least-squares meeting point of the lines ``C_i + λ d_i`` (λ > 0), weighted by the metric
    error a bearing error ``bearing_sigma_rad`` makes at the point's range. None when the lines do not
    meet in front of every view or their geometry leaves the point unconstrained."""
    if len(relatives) < 2:
        return None
    centres = np.array([r.reference_centre for r in relatives], dtype=float)
    if np.max(np.linalg.norm(centres - centres[0], axis=1)) < _MIN_BASELINE_M:
        # Bearings from one centre (views of one panorama) meet there, whatever their noise.
        return None
    projectors = [np.eye(3) - np.outer(r.direction_map, r.direction_map) for r in relatives]
    normal = sum(projectors, np.zeros((3, 3)))
    rhs = sum((p @ r.reference_centre for p, r in zip(projectors, relatives, strict=True)), np.zeros(3))
    if np.linalg.cond(normal) > 1e6:
        return None
    centre = np.linalg.solve(normal, rhs)
    ranges = np.array([float((centre - r.reference_centre) @ r.direction_map) for r in relatives])
    if np.any(ranges <= 0.0):
        return None
    # Re-weight: a bearing error moves the line by range * sigma at the point.
    weighted = sum(
        (p / max(rng * bearing_sigma_rad, 1e-3) ** 2 for p, rng in zip(projectors, ranges, strict=True)),
        np.zeros((3, 3)),
    )
    rhs_w = sum(
        (
            p @ r.reference_centre / max(rng * bearing_sigma_rad, 1e-3) ** 2
            for p, r, rng in zip(projectors, relatives, ranges, strict=True)
        ),
        np.zeros(3),
    )
    try:
        centre = np.linalg.solve(weighted, rhs_w)
        covariance = np.linalg.inv(weighted)
    except np.linalg.LinAlgError:
        return None
    # The lines must meet within their noise: each misses the point by two perpendicular components
    # of standard deviation range * sigma; 3 of the 2n are spent on the point.
    ranges = np.array([float((centre - r.reference_centre) @ r.direction_map) for r in relatives])
    if np.any(ranges <= 0.0):
        return None
    misses = [p @ (centre - r.reference_centre) for p, r in zip(projectors, relatives, strict=True)]
    statistic = sum(
        float(m @ m) / max(rng * bearing_sigma_rad, 1e-3) ** 2 for m, rng in zip(misses, ranges, strict=True)
    )
    if statistic > chi2.ppf(0.99, 2 * len(relatives) - 3):
        return None
    return BearingFix(centre, 0.5 * (covariance + covariance.T), ranges)


def mean_rotation(rotations: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Chordal L2 mean of rotations (the nearest rotation to their weighted sum)."""
    total = sum((w * r for r, w in zip(rotations, weights, strict=True)), np.zeros((3, 3)))
    u, _, vt = np.linalg.svd(total)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt
