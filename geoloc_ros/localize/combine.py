"""One pose from several panoramas' own poses, so that their independent map errors average out.

On a map whose panoramas state a pose uncertainty (real GIS imagery: a metre or two, a degree or
two), the points of different panoramas disagree by tens of pixels: a pooled PnP-RANSAC keeps the
inliers of one panorama (usually the nearest) and its metadata error goes straight into the pose,
since no residual shows an error that moves all of one panorama's points together. The localizer
therefore solves each panorama's matches alone (:mod:`geoloc_ros.localize.localizer`), and each
panorama's pose is ``x_p = x + S_p m_p + n_p``: the true pose moved by the panorama's own error
``m_p = (δx, δy, ε)`` through its sensitivity ``S_p``
(:func:`geoloc_ros.localize.covariance.map_sensitivities`), plus pixel noise ``n_p``.

:func:`combine_panorama_solutions` combines them by weighted least squares, ``x̂ = Σ A_p x_p`` with
``A_p = (Σ_q K_q⁻¹)⁻¹ K_p⁻¹`` and ``K_p = P_p + S_p D_p² S_pᵀ`` (pixel covariance ``P_p``, stated
standard deviations ``D_p = diag(σ_p, σ_p, σ_h,p)``): with the map error dominant every panorama
counts about equally whatever its inlier count, and a panorama whose own pose is weak in some
direction (points on one facade) counts less in that direction. The weights treat panoramas as
independent (always a convex-like combination, never extrapolating), while the covariance is that of
the combination under the correlated model, ``Σ_pq A_p K_pq A_qᵀ`` with ``K_pq = ρ S_p D_p D_q S_qᵀ``
between panoramas (``ρ`` = ``CovarianceConfig.map_correlation``: a capture car's drift is shared by
neighbours, so that part does not average out).

When the combined panoramas disagree more than their covariances say (the reduced chi-square
``r = Σ_p d_pᵀ K_p⁻¹ d_p / (2 (m - 1))`` of their position deviations ``d_p`` from the combination
exceeds 1), the combination's covariance is multiplied by ``r`` (the Birge ratio of a weighted
mean): the random-effects counterpart of the pooled solution's between-view term
(:mod:`geoloc_ros.localize.covariance`). On a map stating metres the map term explains the spread
and nothing changes; on a refined map stating centimetres it is what shows a frame's own error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Relative ridge on the normalised covariances: keeps the inverses defined when some degree of
# freedom (roll, pitch) is nearly noise-free.
_RIDGE = 1e-9


@dataclass(frozen=True)
class PanoramaSolution:
    """The pose one panorama's inliers imply, as a deviation ``(dC, dθ)`` from a reference pose."""

    panorama: int
    deviation: np.ndarray  # (6,)
    pixel_covariance: np.ndarray  # (6, 6) of the deviation under pixel noise (calibrated)
    sensitivity: np.ndarray  # (6, 3) S_p: pose per unit (δx, δy, ε) of the panorama's error
    position_sigma_m: float
    heading_sigma_rad: float
    inliers: int

    def scaled_sensitivity(self) -> np.ndarray:
        """``S_p D_p`` (6, 3)."""
        sigma = np.array([self.position_sigma_m, self.position_sigma_m, self.heading_sigma_rad])
        return np.asarray(self.sensitivity, dtype=float) * sigma

    def covariance(self) -> np.ndarray:
        """``K_p`` (6, 6): pixel noise and the panorama's own map error."""
        s = self.scaled_sensitivity()
        return np.asarray(self.pixel_covariance, dtype=float) + s @ s.T


@dataclass(frozen=True)
class Combination:
    """The combined deviation (6,), its 6x6 covariance (pixel and map, correlation included) and each
    panorama's share of the planar position (the trace of its gain on x, y; they sum to 1)."""

    deviation: np.ndarray
    covariance: np.ndarray
    shares: np.ndarray


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse on the unit diagonal (metres and radians mix), with a small ridge."""
    scale = np.sqrt(np.maximum(np.diag(matrix), 1e-300))
    normalised = matrix / np.outer(scale, scale) + _RIDGE * np.eye(len(matrix))
    return np.linalg.inv(normalised) / np.outer(scale, scale)


def combine_panorama_solutions(solutions: list[PanoramaSolution], correlation: float) -> Combination:
    """The weighted combination of the module docstring (one or more solutions)."""
    if not solutions:
        raise ValueError("combine_panorama_solutions needs at least one panorama solution")
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    own = [s.covariance() for s in solutions]
    if not all(np.all(np.isfinite(k)) for k in own) or not all(
        np.all(np.isfinite(s.deviation)) for s in solutions
    ):
        raise ValueError("a panorama solution has a non-finite deviation, covariance or sensitivity")
    information = [_inverse(k) for k in own]
    total = _inverse(np.sum(information, axis=0))
    gains = [total @ w for w in information]
    deviation = np.sum(
        [a @ np.asarray(s.deviation, dtype=float) for a, s in zip(gains, solutions, strict=True)], axis=0
    )
    scaled = [s.scaled_sensitivity() for s in solutions]
    covariance = np.zeros((6, 6))
    for p, a_p in enumerate(gains):
        covariance += a_p @ np.asarray(solutions[p].pixel_covariance, dtype=float) @ a_p.T
    # Map part: independent share (1 - ρ) per panorama, plus the shared part ρ of everyone's error.
    moved = [a @ s for a, s in zip(gains, scaled, strict=True)]  # (6, 3) each: the combination per unit error
    independent = np.sum([m @ m.T for m in moved], axis=0)
    shared = np.sum(moved, axis=0)
    covariance += (1.0 - correlation) * independent + correlation * shared @ shared.T
    covariance = 0.5 * (covariance + covariance.T) * max(1.0, disagreement(solutions, deviation))
    shares = np.array([np.trace(a[:2, :2]) / 2.0 for a in gains])
    return Combination(deviation, covariance, shares)


def disagreement(solutions: list[PanoramaSolution], combined: np.ndarray) -> float:
    """The reduced chi-square of the solutions' position deviations (x, y) from ``combined`` under
    their own covariances ``K_p`` (0 for a single solution)."""
    if len(solutions) < 2:
        return 0.0
    position = np.array([0, 1])
    total = 0.0
    for s in solutions:
        d = (np.asarray(s.deviation, dtype=float) - combined)[position]
        total += float(d @ _inverse(s.covariance()[np.ix_(position, position)]) @ d)
    return total / (2 * (len(solutions) - 1))
