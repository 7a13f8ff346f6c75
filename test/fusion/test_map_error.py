"""The map's own pose error in fusion (fusion.config.MapErrorConfig): BoVW poses anchored on the same
panoramas share that panorama's error, so fused as independent measurements they make the fused
ellipse overconfident; modelled as a bias state it holds."""

from __future__ import annotations

import math

import numpy as np

from geoloc_ros.fusion import FusionConfig, InitConfig
from geoloc_ros.fusion.ekf import covariance_scales
from geoloc_ros.fusion.measurements import STATE_X, STATE_Y, STATE_YAW, Observation
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
    assert bovw.map_covariance_scale == config.map_error.covariance_scale
    assert bovw.covariance_scale == config.pose_sources[SOURCE_BOVW].covariance_scale
    assert mapped.pose_sources[SOURCE_POSENET] == config.pose_sources[SOURCE_POSENET]
    assert config.pose_sources[SOURCE_BOVW].error_correlation_s == 0.0  # the input is not modified


def test_only_the_share_the_map_explains_takes_the_map_scale() -> None:
    config = FusionConfig().with_map_error(0.1, 1.0)
    bovw = config.pose_sources[SOURCE_BOVW]
    assert bovw.map_covariance_scale is not None
    own, mapped = bovw.covariance_scale, bovw.map_covariance_scale
    # x: all of it is the map's 0.1 m; y: 1 % of it; yaw: a quarter.
    variances = [0.01, 1.0, math.radians(2.0) ** 2]
    obs = Observation(0, SOURCE_BOVW, (STATE_X, STATE_Y, STATE_YAW), np.zeros(3), np.diag(variances))
    np.testing.assert_allclose(
        covariance_scales(bovw, obs), [mapped, 0.01 * mapped + 0.99 * own, 0.25 * mapped + 0.75 * own]
    )
    # Without the map error the source's own scale applies to everything.
    plain = FusionConfig().pose_sources[SOURCE_BOVW]
    np.testing.assert_allclose(covariance_scales(plain, obs), [own] * 3)


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
    return _fused_calibration(config, *_drive_with_map_error(seed))


def _fused_calibration(
    config: FusionConfig, estimates: list[PoseEstimate], stamps: np.ndarray, truth_x: np.ndarray
) -> tuple[float, float]:
    """Share of fused true positions inside the 95 % ellipse and the mean position NEES."""
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


def _drive_on_a_refined_map(seed: int) -> tuple[list[PoseEstimate], np.ndarray, np.ndarray]:
    """A refined map states centimetres (2 cm / 0.02°): the poses' errors are the localizer's own,
    shared by four consecutive poses (they see the same views, as on an exact map, where BoVW's
    covariance_scale 2.0 makes up for it), and the published covariance is their variance."""
    rng = np.random.default_rng(seed)
    stamps = 10**18 + np.arange(1200, dtype=np.int64) * 50_000_000
    truth_x = 8.0 * (stamps - stamps[0]) * 1e-9
    pair = np.arange(len(stamps)) // 4
    xy_noise = rng.normal(0.0, WHITE_SIGMA_M, size=(pair.max() + 1, 2))[pair]
    yaw_noise = np.radians(rng.normal(0.0, WHITE_SIGMA_DEG, size=pair.max() + 1))[pair]
    cov = np.diag([WHITE_SIGMA_M**2, WHITE_SIGMA_M**2, math.radians(WHITE_SIGMA_DEG) ** 2])
    estimates = [
        PoseEstimate.planar(
            int(stamp), truth_x[k] + xy_noise[k, 0], xy_noise[k, 1], yaw_noise[k], cov, source=SOURCE_BOVW
        )
        for k, stamp in enumerate(stamps)
    ]
    return estimates, stamps, truth_x


def test_a_map_stating_centimetres_keeps_the_exact_map_calibration() -> None:
    # Before: the whole covariance took the map scale (0.5 instead of 2.0) once the map stated any
    # uncertainty, and a refined map's fused ellipse was 4x too small in variance.
    config = FusionConfig().with_map_error(0.02, 0.02)
    whole = config.model_copy(
        update={
            "pose_sources": {
                **config.pose_sources,
                SOURCE_BOVW: config.pose_sources[SOURCE_BOVW].model_copy(
                    update={"covariance_scale": config.map_error.covariance_scale}
                ),
            }
        }
    )
    # 300 independent errors per run, fused over ~10 poses: bounds a few binomial sigmas wide.
    for seed in (3, 4):
        estimates, stamps, truth_x = _drive_on_a_refined_map(seed)
        inside, nees = _fused_calibration(config, estimates, stamps, truth_x)
        before, before_nees = _fused_calibration(whole, estimates, stamps, truth_x)
        assert 0.9 <= inside <= 0.995 and 1.0 < nees < 3.0, (inside, nees)
        assert before < inside and before_nees > 1.5 * nees, (before, before_nees, inside, nees)
