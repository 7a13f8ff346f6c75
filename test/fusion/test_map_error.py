"""The map's own pose error in fusion (fusion.config.MapErrorConfig): BoVW poses anchored on the same
panoramas share that panorama's error, so fused as independent measurements they make the fused
ellipse overconfident; modelled as a bias state it holds."""

from __future__ import annotations

import math

import numpy as np

from geoloc_ros.fusion import FusionConfig, InitConfig
from geoloc_ros.geometry.covariance import chi2_quantile
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_BOVW, SOURCE_POSENET
from geoloc_ros.pipelines.fuse_drive import fuse_offline

MAP_SIGMA_M, MAP_SIGMA_DEG = 1.0, 1.5
WHITE_SIGMA_M, WHITE_SIGMA_DEG = 0.05, 0.1


def test_an_exact_map_changes_nothing_and_an_uncertain_one_adds_a_bovw_bias() -> None:
    config = FusionConfig()
    assert config.with_map_error(0.0, 0.0) is config
    mapped = config.with_map_error(MAP_SIGMA_M, MAP_SIGMA_DEG)
    bovw = mapped.pose_sources[SOURCE_BOVW]
    assert bovw.error_correlation_s == config.map_error.correlation_s
    assert (bovw.bias_position_std_m, bovw.bias_yaw_std_deg) == (MAP_SIGMA_M, MAP_SIGMA_DEG)
    assert bovw.covariance_scale == config.map_error.covariance_scale
    assert mapped.pose_sources[SOURCE_POSENET] == config.pose_sources[SOURCE_POSENET]
    assert config.pose_sources[SOURCE_BOVW].error_correlation_s == 0.0  # the input is not modified


def _drive_with_map_error(seed: int) -> tuple[list[PoseEstimate], np.ndarray, np.ndarray]:
    """BoVW poses of a car driving east at 8 m/s for 120 s (20 Hz), each carrying the error of the
    panorama it is anchored on (one per 25 m, σ 1 m / 1.5°) plus white noise, with the covariance a
    localizer that propagates the map's stated uncertainty publishes."""
    rng = np.random.default_rng(seed)
    stamps = 10**18 + np.arange(2400, dtype=np.int64) * 50_000_000
    truth_x = 8.0 * (stamps - stamps[0]) * 1e-9
    segment = (truth_x // 25.0).astype(int)
    map_xy = rng.normal(0.0, MAP_SIGMA_M, size=(segment.max() + 1, 2))
    map_yaw = np.radians(rng.normal(0.0, MAP_SIGMA_DEG, size=segment.max() + 1))
    cov = np.diag(
        [
            WHITE_SIGMA_M**2 + MAP_SIGMA_M**2,
            WHITE_SIGMA_M**2 + MAP_SIGMA_M**2,
            math.radians(WHITE_SIGMA_DEG) ** 2 + math.radians(MAP_SIGMA_DEG) ** 2,
        ]
    )
    estimates = []
    for k, stamp in enumerate(stamps):
        xy = np.array([truth_x[k], 0.0]) + map_xy[segment[k]] + rng.normal(0.0, WHITE_SIGMA_M, 2)
        yaw = map_yaw[segment[k]] + math.radians(rng.normal(0.0, WHITE_SIGMA_DEG))
        estimates.append(PoseEstimate.planar(int(stamp), xy[0], xy[1], yaw, cov, source=SOURCE_BOVW))
    return estimates, stamps, truth_x


def _coverage_95(config: FusionConfig, seed: int) -> tuple[float, float]:
    estimates, stamps, truth_x = _drive_with_map_error(seed)
    fused = fuse_offline(estimates, stamps, config).estimates
    truth = dict(zip(stamps.tolist(), truth_x, strict=True))
    nees = []
    for estimate in fused[100:]:  # past the start-up
        error = estimate.position[:2] - np.array([truth[estimate.stamp_ns], 0.0])
        nees.append(float(error @ np.linalg.solve(estimate.planar_covariance[:2, :2], error)))
    inside = float(np.mean(np.array(nees) <= chi2_quantile(0.95, 2)))
    return inside, float(np.mean(nees))


def test_the_fused_ellipse_holds_when_the_map_error_is_modelled() -> None:
    # Every pose states a 1 m map term: let them start the filter (on a drive, GPS or a good pose does).
    base = FusionConfig(init=InitConfig(max_position_std_m=3.0))
    # About 40 independent panorama errors per run: bounds a few binomial sigmas wide.
    for seed in (1, 2):
        independent, independent_nees = _coverage_95(base, seed)
        modelled, modelled_nees = _coverage_95(base.with_map_error(MAP_SIGMA_M, MAP_SIGMA_DEG), seed)
        assert independent < 0.6 and independent_nees > 6.0, (independent, independent_nees)
        assert modelled >= 0.85 and modelled_nees < 3.0, (modelled, modelled_nees)
