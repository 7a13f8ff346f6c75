"""Covariance helpers for ``geometry_msgs/PoseWithCovariance``.

The message carries a 6x6 covariance, row-major, over ``(x, y, z, rot x, rot y, rot z)``: position
in metres and rotation about the fixed axes in radians (roll, pitch, yaw for small angles).
A degree of freedom that is not estimated gets :data:`UNKNOWN_VARIANCE` (robot_localization and
RViz treat a huge variance as "ignore").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

# Indices into the 6x6 PoseWithCovariance matrix.
X, Y, Z, ROLL, PITCH, YAW = range(6)
PLANAR_INDICES = (X, Y, YAW)
UNKNOWN_VARIANCE = 1.0e6


class CovarianceError(ValueError):
    """A covariance is not a finite, symmetric, positive semi-definite matrix of the right size."""


def validate_covariance(cov: npt.ArrayLike, dim: int, name: str = "covariance") -> np.ndarray:
    """Return ``cov`` as a ``(dim, dim)`` array or raise :class:`CovarianceError` saying what is wrong."""
    c = np.asarray(cov, dtype=float)
    if c.size != dim * dim:
        raise CovarianceError(f"{name} must have {dim * dim} elements, got {c.size}")
    c = c.reshape(dim, dim)
    if not np.all(np.isfinite(c)):
        raise CovarianceError(f"{name} contains NaN or infinite values")
    if not np.allclose(c, c.T, rtol=1e-6, atol=1e-9):
        raise CovarianceError(f"{name} is not symmetric")
    if np.any(np.diag(c) < 0):
        raise CovarianceError(f"{name} has a negative variance on its diagonal")
    eig_min = float(np.linalg.eigvalsh(0.5 * (c + c.T)).min())
    if eig_min < -1e-9 * max(1.0, float(np.abs(c).max())):
        raise CovarianceError(f"{name} is not positive semi-definite (smallest eigenvalue {eig_min:.3g})")
    return c


def to_row_major(cov6: npt.ArrayLike) -> list[float]:
    """6x6 matrix -> the 36 floats of ``PoseWithCovariance.covariance``."""
    c = np.asarray(cov6, dtype=float)
    if c.shape != (6, 6):
        raise CovarianceError(f"pose covariance must be 6x6, got shape {c.shape}")
    return [float(v) for v in c.reshape(36)]


def from_row_major(values: npt.ArrayLike) -> np.ndarray:
    """The 36 floats of ``PoseWithCovariance.covariance`` -> 6x6 matrix (validated)."""
    return validate_covariance(values, 6, "pose covariance")


def planar_to_pose_covariance(
    cov_xy_yaw: npt.ArrayLike,
    z_variance: float = UNKNOWN_VARIANCE,
    roll_pitch_variance: float = UNKNOWN_VARIANCE,
) -> np.ndarray:
    """Embed a 3x3 ``(x, y, yaw)`` covariance into the 6x6 pose layout.

    The unestimated degrees of freedom (z, roll, pitch) get the given (by default huge) variances.
    """
    c3 = validate_covariance(cov_xy_yaw, 3, "planar covariance")
    c6 = np.zeros((6, 6))
    idx = np.array(PLANAR_INDICES)
    c6[np.ix_(idx, idx)] = c3
    c6[Z, Z] = z_variance
    c6[ROLL, ROLL] = roll_pitch_variance
    c6[PITCH, PITCH] = roll_pitch_variance
    return c6


def chi2_quantile(probability: float, dof: int) -> float:
    """Squared Mahalanobis radius enclosing ``probability`` of a ``dof``-dimensional Gaussian."""
    return float(chi2.ppf(probability, dof))


def worst_horizontal_sigma(covariance: npt.ArrayLike) -> float:
    """Standard deviation (m) of a position covariance along its worst horizontal axis: the square
    root of the largest eigenvalue of its (x, y) block (0 for a degenerate one)."""
    block = np.asarray(covariance, dtype=float)[:2, :2]
    return float(np.sqrt(max(np.linalg.eigvalsh(block).max(), 0.0)))
