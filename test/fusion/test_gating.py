from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from geoloc_ros.fusion.gating import gate_threshold, mahalanobis_gate


def test_threshold_is_the_chi_square_quantile() -> None:
    assert gate_threshold(0.95, 2) == pytest.approx(5.991, abs=1e-3)
    assert gate_threshold(0.999, 3) == pytest.approx(chi2.ppf(0.999, 3))


def test_gate_accepts_inside_and_rejects_outside() -> None:
    cov = np.diag([4.0, 1.0])
    inside = mahalanobis_gate(np.array([2.0, 1.0]), cov, 0.95)  # NIS = 1 + 1 = 2
    assert inside.nis == pytest.approx(2.0)
    assert inside.accepted and inside.dof == 2
    outside = mahalanobis_gate(np.array([0.0, 3.0]), cov, 0.95)  # NIS = 9 > 5.99
    assert not outside.accepted


def test_singular_innovation_covariance_rejects() -> None:
    decision = mahalanobis_gate(np.array([1.0, 0.0]), np.zeros((2, 2)), 0.99)
    assert decision.nis == float("inf") and not decision.accepted


@pytest.mark.parametrize(("probability", "dof"), [(0.0, 2), (1.0, 2), (0.5, 0)])
def test_threshold_rejects_bad_arguments(probability: float, dof: int) -> None:
    with pytest.raises(ValueError):
        gate_threshold(probability, dof)
