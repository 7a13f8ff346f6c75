from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.geometry.covariance import chi2_quantile
from geoloc_ros.posenet.calibration import CalibrationConfig, holdout_mask, location_cells, variance_scale


def _residuals(n: int, per_axis_variance: float, seed: int = 0) -> np.ndarray:
    errors = np.random.default_rng(seed).normal(0.0, np.sqrt(per_axis_variance), size=(n, 2))
    return np.linalg.norm(errors, axis=1)


@pytest.mark.parametrize("coverage", [0.5, 0.95])
def test_variance_scale_recovers_a_known_variance_at_any_coverage(coverage: float) -> None:
    residual = _residuals(40000, 4.0)
    # The model predicts a quarter of the true variance: the factor is 4 at every quantile.
    assert variance_scale(residual, np.full(40000, np.log(1.0)), 2, coverage) == pytest.approx(4.0, rel=0.05)
    assert variance_scale(residual, np.full(40000, np.log(4.0)), 2, coverage) == pytest.approx(1.0, rel=0.05)


def test_calibrated_at_95_percent_puts_95_percent_inside_even_with_gross_failures() -> None:
    rng = np.random.default_rng(1)
    residual = _residuals(20000, 1.0, seed=2)
    residual[:1000] = rng.uniform(20.0, 50.0, 1000)  # 5 % gross failures
    log_var = np.log(rng.uniform(0.5, 2.0, 20000))  # per-sample predictions
    median_k = variance_scale(residual, log_var, 2, 0.5)
    k = variance_scale(residual, log_var, 2, 0.95)
    inside = residual**2 / (k * np.exp(log_var)) <= chi2_quantile(0.95, 2)
    assert np.mean(inside) == pytest.approx(0.95, abs=0.005)
    # The median factor ignores the tail and leaves too few inside.
    assert np.mean(residual**2 / (median_k * np.exp(log_var)) <= chi2_quantile(0.95, 2)) < 0.93


def test_whole_location_cells_are_held_out_reproducibly() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0.0, 100.0, size=(2000, 2))
    config = CalibrationConfig(enabled=True, cell_m=10.0, holdout_fraction=0.2)
    mask = holdout_mask(xy, config, seed=3)
    cells = location_cells(xy, 10.0)
    assert len(np.unique(cells)) == 100
    held = set(cells[mask])
    assert len(held) == 20 and not held & set(cells[~mask])
    np.testing.assert_array_equal(mask, holdout_mask(xy, config, seed=3))
    assert not np.array_equal(mask, holdout_mask(xy, config, seed=4))
    with pytest.raises(ValueError, match="at least 2 cells"):
        holdout_mask(np.zeros((5, 2)), config, seed=0)
