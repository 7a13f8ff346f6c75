from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from geoloc_ros.fusion import (
    GpsFix,
    InvalidMeasurementError,
    MotionMeasurement,
    estimate_from_position,
    position_from_gps_fix,
)
from geoloc_ros.fusion.measurements import observation_from_motion, observation_from_pose
from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE
from geoloc_ros.geometry.estimate import PoseEstimate

ORIGIN = GeoOrigin(48.8738, 2.2950, 35.0)


def _fix(**changes: object) -> GpsFix:
    lat, lon, alt = enu_to_geodetic(np.array([120.0, -35.0, 2.0]), ORIGIN)
    fix = GpsFix(7, float(lat), float(lon), float(alt), np.diag([4.0, 9.0, 16.0]).ravel(), covariance_type=2)
    return dataclasses.replace(fix, **changes)


def test_gps_fix_becomes_an_enu_position_with_its_covariance() -> None:
    m = position_from_gps_fix(_fix(), ORIGIN)
    assert np.allclose(m.position, [120.0, -35.0], atol=1e-6) and m.up_m == pytest.approx(2.0, abs=1e-6)
    assert np.allclose(m.covariance, np.diag([4.0, 9.0]))
    unknown = position_from_gps_fix(_fix(covariance_type=0, position_covariance=np.zeros(9)), ORIGIN, 6.0)
    assert np.allclose(unknown.covariance, np.eye(2) * 36.0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": -1}, "no_fix"),
        ({"latitude_deg": float("nan")}, "non_finite"),
        ({"position_covariance": np.full(9, np.nan)}, "invalid_covariance"),
    ],
)
def test_bad_fixes_carry_their_reason(changes: dict, reason: str) -> None:
    with pytest.raises(InvalidMeasurementError) as info:
        position_from_gps_fix(_fix(**changes), ORIGIN)
    assert info.value.reason == reason


def test_pose_observation_reads_x_y_yaw_and_the_planar_covariance_block() -> None:
    cov = np.array([[0.1, 0.02, 0.001], [0.02, 0.2, 0.0], [0.001, 0.0, 0.003]])
    obs = observation_from_pose(PoseEstimate.planar(3, 1.0, 2.0, 3.0, cov, z=4.0, source="bovw"), "map")
    assert obs.indices == (0, 1, 2) and np.allclose(obs.values, [1.0, 2.0, 3.0])
    assert np.allclose(obs.covariance, cov) and obs.up_m == 4.0


@pytest.mark.parametrize("variances", [[0.0, 0.0, 0.0], [0.1, 0.0, 0.003], [0.1, 0.2, 0.0]])
def test_a_pose_with_a_zero_variance_is_refused_not_trusted_exactly(variances: list[float]) -> None:
    # All zero is a message whose covariance was never filled; taken as exact it collapses the filter.
    estimate = PoseEstimate.planar(3, 1.0, 2.0, 3.0, np.diag(variances), source="bovw")
    with pytest.raises(InvalidMeasurementError, match="must be positive") as info:
        observation_from_pose(estimate, "map")
    assert info.value.reason == "invalid_covariance"


def test_motion_observation_keeps_only_what_is_measured() -> None:
    obs = observation_from_motion(MotionMeasurement(1, "imu", yaw_rate_rps=0.1, yaw_rate_variance=1e-4))
    assert obs.indices == (4,) and np.allclose(obs.covariance, [[1e-4]])
    with pytest.raises(InvalidMeasurementError, match="neither speed nor yaw rate"):
        observation_from_motion(MotionMeasurement(1, "imu"))
    with pytest.raises(InvalidMeasurementError, match="variance"):
        observation_from_motion(MotionMeasurement(1, "odometry", speed_mps=1.0, speed_variance=-1.0))


def test_gps_position_as_an_estimate_has_no_heading() -> None:
    estimate = estimate_from_position(position_from_gps_fix(_fix(), ORIGIN))
    assert np.allclose(estimate.position, [120.0, -35.0, 2.0], atol=1e-6)
    assert np.allclose(estimate.planar_covariance[:2, :2], np.diag([4.0, 9.0]))
    assert estimate.planar_covariance[2, 2] == UNKNOWN_VARIANCE
    assert (estimate.source, estimate.frame_id) == ("gps", "map")
