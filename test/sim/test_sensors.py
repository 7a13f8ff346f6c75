"""Sensor models: GPS error statistics and dropouts, RTK noise, IMU orientation, camera exposure."""

from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.geometry.pose import rotation_from_quaternion
from geoloc_ros.sim.generate import Plan, drive_camera_model
from geoloc_ros.sim.scenario import GpsConfig, preset
from geoloc_ros.sim.sensors import gps_fixes, imu_samples, rtk_fixes


def test_gps_error_is_metres_correlated_and_drops_out(tiny_plan: Plan) -> None:
    tr = tiny_plan.trajectory
    cfg = GpsConfig(
        sigma_m=5.0, correlation_time_s=30.0, dropouts_per_minute=20.0, dropout_duration_s=(1.0, 2.0)
    )
    errors = []
    for seed in range(20):
        fixes = gps_fixes(tr, cfg, np.random.default_rng(seed))
        truth, _ = tr.states_at(fixes.times)
        err = fixes.positions - truth
        errors.append(err)
        assert len(fixes.times) < tr.duration * cfg.rate_hz  # dropouts removed fixes
    horiz = np.concatenate([e[:, :2] for e in errors])
    assert 2.5 < np.std(horiz) < 8.0
    # Consecutive fixes 0.2 s apart share most of their error (Gauss-Markov, tau = 30 s).
    e = errors[0][:, 0]
    assert np.corrcoef(e[:-1], e[1:])[0, 1] > 0.8


def test_rtk_is_centimetre_accurate(tiny_plan: Plan) -> None:
    fixes = rtk_fixes(tiny_plan.trajectory, 10.0, 0.02, np.random.default_rng(0))
    truth, _ = tiny_plan.trajectory.states_at(fixes.times)
    assert np.std(fixes.positions[:, :2] - truth[:, :2]) == pytest.approx(0.02, rel=0.3)


def test_imu_orientation_is_the_vehicle_attitude(tiny_plan: Plan) -> None:
    imu = imu_samples(tiny_plan.trajectory, 50.0, 0.1, np.random.default_rng(0))
    poses = tiny_plan.trajectory.poses_at(imu.times)
    for q, pose in list(zip(imu.quaternions, poses, strict=True))[::25]:
        delta = rotation_from_quaternion(q).T @ pose.rotation
        angle = np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1)))
        assert angle < 0.6


def test_exposure_adds_noise_of_the_configured_size() -> None:
    model = drive_camera_model(preset("tiny"))
    flat = np.full((240, 320, 3), 100.0, np.float32)
    out = model.expose(flat, np.random.default_rng(0)).astype(float)
    centre = out[100:140, 140:180]
    nz = model.nuisances
    expected = np.sqrt(nz.shot_noise**2 * centre.mean() + nz.sensor_noise_sigma**2)
    assert np.std(centre) == pytest.approx(expected, rel=0.2)
    assert out[:10, :10].mean() < centre.mean(), "vignetting darkens the corners"
