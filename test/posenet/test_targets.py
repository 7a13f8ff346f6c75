from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE
from geoloc_ros.geometry.frames import CameraMounting, optical_pose_from_body
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.posenet.errors import ModelError
from geoloc_ros.posenet.targets import (
    PoseNormalization,
    decode_outputs,
    encode_targets,
    pose_errors,
    pose_output_size,
)


def camera_at(x: float, y: float, z: float, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> Pose3D:
    return optical_pose_from_body(Pose3D.from_xyz_ypr([x, y, z], yaw, pitch, roll))


def test_normalization_fit_mean_and_isotropic_scale() -> None:
    poses = [camera_at(x, y, 2.0, 0.0) for x, y in ((0, 0), (2, 0), (0, 2), (2, 2))]
    norm = PoseNormalization.fit(poses, dof=3)
    assert norm.position_mean == pytest.approx((1.0, 1.0))
    assert norm.position_scale == pytest.approx(1.0)  # every coordinate is 1 m from the mean
    six = PoseNormalization.fit(poses, dof=6)
    assert six.position_mean == pytest.approx((1.0, 1.0, 2.0))
    assert six.position_scale == pytest.approx(np.sqrt(2.0 / 3.0))  # z has no spread
    assert PoseNormalization.fit([poses[0]], dof=3).position_scale == 1.0


def test_normalization_validation_and_roundtrip() -> None:
    norm = PoseNormalization(3, (1.0, 2.0), 5.0)
    assert PoseNormalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(ModelError, match="position_mean must have 2"):
        PoseNormalization(3, (1.0, 2.0, 3.0), 5.0)
    with pytest.raises(ModelError, match="position_scale"):
        PoseNormalization(3, (1.0, 2.0), 0.0)
    with pytest.raises(ModelError, match="missing field 'position_scale'"):
        PoseNormalization.from_dict({"dof": 3, "position_mean": [0, 0]})
    with pytest.raises(ModelError, match="dof"):
        pose_output_size(4)


def test_encode_3dof_is_normalised_position_and_heading_unit_vector() -> None:
    norm = PoseNormalization(3, (10.0, 20.0), 5.0)
    targets = encode_targets([camera_at(15.0, 10.0, 2.0, np.pi / 2)], norm)
    assert targets.dtype == np.float32
    np.testing.assert_allclose(targets[0], [1.0, -2.0, 0.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("dof", [3, 6])
def test_decode_inverts_encode(dof: int) -> None:
    rng = np.random.default_rng(1)
    poses = [
        camera_at(*rng.uniform(-50, 50, 2), 2.0, rng.uniform(-np.pi, np.pi), 0.02, -0.01) for _ in range(5)
    ]
    norm = PoseNormalization.fit(poses, dof)
    targets = encode_targets(poses, norm)
    decoded = decode_outputs(targets, np.zeros((5, 2)), norm)
    position_error, rotation_error = pose_errors(decoded, poses)
    np.testing.assert_allclose(position_error, 0.0, atol=1e-4)
    np.testing.assert_allclose(rotation_error, 0.0, atol=1e-5)
    np.testing.assert_allclose(decoded.position_variance, norm.position_scale**2)
    # dof=6 orientation log-variance is a quarter of the per-axis rotation variance.
    np.testing.assert_allclose(decoded.rotation_variance, 1.0 if dof == 3 else 4.0)


def test_decode_heading_ignores_output_scale_and_checks_shapes() -> None:
    norm = PoseNormalization(3, (0.0, 0.0), 1.0)
    decoded = decode_outputs(np.array([[0.0, 0.0, 0.0, 3.0], [0.0, 0.0, -2.0, 0.0]]), np.zeros((2, 2)), norm)
    np.testing.assert_allclose(decoded.yaw, [np.pi / 2, np.pi])
    with pytest.raises(ModelError, match=r"shape \(N, 4\)"):
        decode_outputs(np.zeros((2, 7)), np.zeros((2, 2)), norm)
    with pytest.raises(ModelError, match="log-variance"):
        decode_outputs(np.zeros((2, 4)), np.zeros((2, 3)), norm)
    scaled = decode_outputs(np.zeros((1, 4)), np.log([[0.5, 0.25]]), norm, variance_scale=(3.0, 2.0))
    np.testing.assert_allclose([scaled.position_variance[0], scaled.rotation_variance[0]], [1.5, 0.5])
    # Wild log-variances are clipped, never inf or NaN.
    wild = decode_outputs(np.zeros((1, 4)), np.array([[1e4, np.nan]]), norm)
    assert np.all(np.isfinite(wild.position_variance)) and np.all(np.isfinite(wild.rotation_variance))


def test_base_estimate_identity_mount_is_camera_pose_with_unknown_z_roll_pitch() -> None:
    norm = PoseNormalization(3, (0.0, 0.0), 10.0)
    out = np.array([[0.5, -0.2, np.cos(0.3), np.sin(0.3)]])
    log_var = np.log([[0.01, 0.004]])  # (1 m)^2 after scaling, 0.004 rad^2
    estimate = decode_outputs(out, log_var, norm).base_estimate(0, 42, source="posenet")
    assert estimate.stamp_ns == 42 and estimate.source == "posenet" and estimate.frame_id == "map"
    np.testing.assert_allclose(estimate.position[:2], [5.0, -2.0])
    assert estimate.yaw == pytest.approx(0.3)
    np.testing.assert_allclose(np.diag(estimate.covariance), [1.0, 1.0] + [UNKNOWN_VARIANCE] * 3 + [0.004])


def test_base_estimate_applies_mounting_lever_arm() -> None:
    # Camera 1.5 m ahead of base_link; vehicle heading north (yaw 90 deg).
    mounting = CameraMounting(translation=(1.5, 0.0, 1.2), pitch_deg=3.0).base_to_optical()
    norm = PoseNormalization(3, (0.0, 0.0), 1.0)
    out = np.array([[10.0, 5.0, 0.0, 1.0]])
    var_p, var_h = 0.25, 0.01
    estimate = decode_outputs(out, np.log([[var_p, var_h]]), norm).base_estimate(0, 0, mounting)
    np.testing.assert_allclose(estimate.position[:2], [10.0, 3.5], atol=1e-9)
    assert estimate.yaw == pytest.approx(np.pi / 2)
    cov = estimate.planar_covariance
    # Heading uncertainty swings the 1.5 m lever arm sideways (along x when facing north).
    np.testing.assert_allclose(
        cov,
        [[var_p + 2.25 * var_h, 0.0, 1.5 * var_h], [0.0, var_p, 0.0], [1.5 * var_h, 0.0, var_h]],
        atol=1e-12,
    )


def test_base_estimate_6dof_composes_full_mounting() -> None:
    mounting_cfg = CameraMounting(translation=(1.0, 0.2, 1.5), yaw_deg=10.0, pitch_deg=5.0)
    t_base_optical = mounting_cfg.base_to_optical()
    t_map_base = Pose3D.from_xyz_ypr([30.0, -4.0, 0.5], 0.7, 0.02, -0.01)
    t_map_optical = t_map_base.compose(t_base_optical)
    norm = PoseNormalization(6, (0.0, 0.0, 0.0), 1.0)
    targets = encode_targets([t_map_optical], norm)
    estimate = decode_outputs(targets, np.log([[0.04, 0.0001]]), norm).base_estimate(0, 7, t_base_optical)
    np.testing.assert_allclose(estimate.pose.as_matrix(), t_map_base.as_matrix(), atol=1e-5)
    cov = estimate.covariance
    np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(np.diag(cov)[3:], 4.0 * 0.0001)


def test_pose_errors_hand_checked() -> None:
    norm = PoseNormalization(3, (0.0, 0.0), 1.0)
    decoded = decode_outputs(np.array([[3.0, 4.0, 1.0, 0.0]]), np.zeros((1, 2)), norm)
    position_error, heading_error = pose_errors(decoded, [camera_at(0.0, 0.0, 2.0, np.deg2rad(170.0))])
    assert position_error[0] == pytest.approx(5.0)
    assert np.rad2deg(heading_error[0]) == pytest.approx(170.0)
