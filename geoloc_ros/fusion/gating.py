"""Mahalanobis gating of innovations against a chi-square quantile."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from geoloc_ros.geometry.covariance import chi2_quantile


@lru_cache(maxsize=256)
def gate_threshold(probability: float, dof: int) -> float:
    """Squared Mahalanobis distance enclosing ``probability`` of a ``dof``-dimensional Gaussian.

    Cached: the filter asks for the same few (probability, dof) pairs thousands of times a second
    and ``scipy.stats.chi2.ppf`` costs tens of microseconds.
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"gate probability must be in (0, 1), got {probability}")
    if dof < 1:
        raise ValueError(f"gate degrees of freedom must be >= 1, got {dof}")
    return chi2_quantile(probability, dof)


@dataclass(frozen=True)
class GateDecision:
    """The normalized innovation squared (NIS), the threshold it was compared with, and the verdict."""

    nis: float
    threshold: float
    dof: int

    @property
    def accepted(self) -> bool:
        return self.nis <= self.threshold


def mahalanobis_gate(
    innovation: np.ndarray, innovation_covariance: np.ndarray, probability: float
) -> GateDecision:
    """Gate ``innovation`` (already angle-wrapped) with covariance ``S`` at ``probability``.

    A singular ``S`` (which a valid filter cannot produce) yields an infinite NIS, i.e. rejection.
    """
    nu = np.asarray(innovation, dtype=float).reshape(-1)
    try:
        nis = float(nu @ np.linalg.solve(innovation_covariance, nu))
    except np.linalg.LinAlgError:
        nis = float("inf")
    if not np.isfinite(nis) or nis < 0.0:
        nis = float("inf")
    return GateDecision(nis, gate_threshold(float(probability), nu.size), nu.size)
