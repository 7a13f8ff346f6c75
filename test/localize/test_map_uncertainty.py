"""The map's own uncertainty in the BoVW pose: calibration on the tiny scenario, exact and with
panorama metadata off by about a metre (``tiny_perturbed``: the tiny panoramas re-stated with a
seeded error, then mapped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2

from geoloc_ros.io.drive import DriveBag
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.localize_drive import localize_drive


def tiny_config(**covariance: object) -> LocalizerConfig:
    return LocalizerConfig.model_validate(
        {"features": {"fast": False}, "rejection": {"min_inliers": 15}, "covariance": covariance}
    )


def nees(estimates, truth) -> np.ndarray:
    """Position (x, y) NEES of each estimate against the ground truth at its stamp."""
    out = []
    for e in estimates:
        k = int(np.flatnonzero(truth["stamp_ns"] == e.stamp_ns)[0])
        d = e.position[:2] - truth["position_enu"][k, :2]
        out.append(float(d @ np.linalg.solve(e.covariance[:2, :2], d)))
    return np.array(out)


def run(map_dir: Path, sim_dir: Path, config: LocalizerConfig):
    drive = DriveBag(sim_dir / "drive")
    truth = np.load(sim_dir / "drive" / "groundtruth.npz")
    localizer = Localizer(MapBundle.open(map_dir, verify="sizes"), config, drive.mounting, drive.camera)
    result = localize_drive(localizer, drive)
    return result, nees(result.estimates, truth), truth


INSIDE_95 = chi2.ppf(0.95, 2)


@pytest.mark.slow
def test_exact_map_covariance_is_calibrated_and_not_inflated(tiny_sim_dir, tiny_map_dir):
    result, n, _ = run(tiny_map_dir, tiny_sim_dir, tiny_config())
    assert len(n) >= 0.8 * result.n_frames
    inside = float(np.mean(n <= INSIDE_95))
    # ~60 frames, strongly correlated along the drive: a wide but failing-able band around 95 %.
    assert 0.8 <= inside <= 1.0
    # Not uselessly wide: the exact map states no error, so the map term adds nothing here.
    assert np.median(n) > 0.05
    bundle = MapBundle.open(tiny_map_dir, verify="sizes")
    assert not Localizer(bundle, tiny_config(), None, None).map_is_uncertain


@pytest.mark.slow
def test_realistic_map_covariance_holds_where_the_exact_model_does_not(tiny_sim_dir, tiny_perturbed):
    realistic_map, _ = tiny_perturbed
    with_map, n_map, _ = run(realistic_map, tiny_sim_dir, tiny_config())
    _, n_without, _ = run(realistic_map, tiny_sim_dir, tiny_config(map_uncertainty=False))
    assert len(n_map) >= 0.7 * with_map.n_frames
    inside = float(np.mean(n_map <= INSIDE_95))
    inside_without = float(np.mean(n_without <= INSIDE_95))
    # Eight panoramas with one seeded error each: few independent draws, so the band is wide; the
    # exact-map model falls far below it (the figure the issue reports: 1-2 %).
    assert inside >= 0.8, inside
    assert inside_without < 0.6, inside_without
    assert np.median(n_map) < np.median(n_without)
