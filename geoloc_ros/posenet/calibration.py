"""Calibration of PoseNet's predicted variances on views held out by location (torch-free).

A PoseNet's log-variance outputs are trained on its own training views, where its error is small,
so on new images they are overconfident. The calibration measures, on views **held out by
location** (square cells of ``cell_m`` in the map plane: a held-out view's neighbours within the
cell are held out too, so the model cannot just recall an almost identical training view), the
factor ``k`` by which the predicted variance must be multiplied for the ``coverage`` quantile of
the normalised squared errors to match the chi-square law's (:func:`variance_scale`). With
``coverage = 0.95`` a calibrated model puts 95 % of the held-out errors inside its 95 % ellipse.

:func:`geoloc_ros.posenet.train.train` runs it when ``calibration.enabled``: a calibration model
is trained with the same recipe on the views outside the held-out cells (seconds per epoch on the
feature cache), its held-out errors give the factors, and the final model (trained on every view)
carries them into the exported file's metadata (``variance_scale``).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from geoloc_ros.config import StrictModel
from geoloc_ros.geometry.covariance import chi2_quantile


class CalibrationConfig(StrictModel):
    """Held-out-by-location variance calibration run before the final training."""

    enabled: bool = False
    # Side of the square location cells (metres); whole cells are held out.
    cell_m: float = Field(8.0, gt=0.0)
    holdout_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    # Quantile of the normalised squared errors matched to the chi-square law's.
    coverage: float = Field(0.95, gt=0.0, lt=1.0)


def location_cells(positions_xy: np.ndarray, cell_m: float) -> np.ndarray:
    """One integer id per position: the ``cell_m`` square (map plane) holding it."""
    xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    ij = np.floor(xy / cell_m).astype(np.int64)
    _, ids = np.unique(ij, axis=0, return_inverse=True)
    return ids.reshape(-1)


def holdout_mask(positions_xy: np.ndarray, config: CalibrationConfig, seed: int) -> np.ndarray:
    """Boolean mask of the views held out: every view of a seeded ``holdout_fraction`` of the cells.

    At least one cell is held out and at least one is kept.
    """
    cells = location_cells(positions_xy, config.cell_m)
    n_cells = int(cells.max()) + 1 if len(cells) else 0
    if n_cells < 2:
        raise ValueError(f"calibration needs views in at least 2 cells of {config.cell_m} m, got {n_cells}")
    n_out = min(n_cells - 1, max(1, round(config.holdout_fraction * n_cells)))
    chosen = np.random.default_rng([seed, 7]).choice(n_cells, size=n_out, replace=False)
    return np.isin(cells, chosen)


def variance_scale(residual: np.ndarray, log_var: np.ndarray, dim: int, coverage: float = 0.5) -> float:
    """Factor ``k`` such that ``k * exp(log_var)`` explains ``residual`` (norms of ``dim``-D errors).

    For calibrated per-axis variances ``e^2 / var`` follows a chi-square law with ``dim`` degrees
    of freedom; the factor is the ratio of the sample's ``coverage`` quantile to the law's. The
    median (``coverage = 0.5``) ignores the few gross failures; ``0.95`` makes the 95 % ellipse
    hold 95 % of the errors whatever the shape of their tail.
    """
    ratio = np.asarray(residual, dtype=np.float64) ** 2 / np.exp(np.asarray(log_var, dtype=np.float64))
    return float(np.quantile(ratio, coverage) / chi2_quantile(coverage, dim))
