"""Covariance model: lever-arm propagation to base_link, evidence inflation, between-view spread, floor."""

import numpy as np
from scipy.spatial.transform import Rotation

from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import CovarianceConfig
from geoloc_ros.localize.covariance import (
    ViewSolution,
    base_covariance,
    between_view_covariance,
    camera_covariance,
    pose_deviation,
    with_floor,
)

MOUNTING = CameraMounting(translation=(1.2, 0.0, -0.25), yaw_deg=0.5, pitch_deg=2.0)


def test_base_covariance_matches_monte_carlo_through_the_lever_arm():
    rng = np.random.default_rng(0)
    t_base_optical = MOUNTING.base_to_optical()
    camera = Pose3D.from_xyz_ypr([5.0, -2.0, 1.5], 0.8).compose(t_base_optical)
    sigmas = np.array([0.05, 0.08, 0.03, 0.004, 0.006, 0.01])
    covariance = np.diag(sigmas**2)
    samples = rng.multivariate_normal(np.zeros(6), covariance, size=20000)
    t_optical_base = t_base_optical.inverse()
    base_nominal = camera.compose(t_optical_base)
    deviations = []
    for d in samples:
        perturbed = Pose3D(
            Rotation.from_rotvec(d[3:]).as_matrix() @ camera.rotation, camera.translation + d[:3]
        )
        deviations.append(pose_deviation(perturbed.compose(t_optical_base), base_nominal))
    empirical = np.cov(np.array(deviations).T)
    propagated = base_covariance(camera, covariance, t_base_optical)
    np.testing.assert_allclose(propagated, empirical, atol=3e-4 * 0.1 + 2e-5, rtol=0.05)
    # The lever arm (1.2 m) turns yaw uncertainty into lateral position uncertainty at the base.
    gained = np.trace(propagated[:2, :2]) - np.trace(covariance[:2, :2])
    assert gained > 0.9 * (1.2 * sigmas[5]) ** 2


def test_weak_evidence_inflates_the_covariance():
    config = CovarianceConfig(scale=2.0, reference_inliers=50, reference_inlier_ratio=0.5, reference_views=4)
    refined = np.diag([0.01, 0.01, 0.01, 1e-5, 1e-5, 1e-5])
    many = camera_covariance(refined, 500, 0.8, 1, None, config)
    np.testing.assert_allclose(many, 4.0 * (1 + 0.1**2) * 4.0 * refined)
    few = camera_covariance(refined, 25, 0.8, 1, None, config)
    np.testing.assert_allclose(np.diag(few) / np.diag(many), (1 + 2.0**2) / (1 + 0.1**2))
    low_ratio = camera_covariance(refined, 500, 0.25, 1, None, config)
    np.testing.assert_allclose(np.diag(low_ratio) / np.diag(many), 2.0)
    # Without a between-view estimate, fewer views solved alone inflate more.
    three_views = camera_covariance(refined, 500, 0.8, 3, None, config)
    np.testing.assert_allclose(np.diag(three_views) / np.diag(many), 2.0 / 4.0)


def test_disagreeing_views_add_their_spread():
    joint = Pose3D.from_xyz_ypr([0.0, 0.0, 0.0], 0.2)
    alone = [Pose3D.from_xyz_ypr([0.5, 0.0, 0.0], 0.2), Pose3D.from_xyz_ypr([-0.5, 0.0, 0.0], 0.2)]
    solutions = [ViewSolution(k, pose_deviation(pose, joint), 40) for k, pose in enumerate(alone)]
    spread = between_view_covariance(solutions)
    assert spread is not None
    np.testing.assert_allclose(spread[0, 0], 0.5, atol=1e-12)  # (0.25 + 0.25) / (2 - 1)
    assert spread[1, 1] == 0.0
    assert between_view_covariance(solutions[:1]) is None
    config = CovarianceConfig(scale=1.0, reference_inliers=10, reference_inlier_ratio=0.0)
    refined = np.eye(6) * 1e-4
    combined = camera_covariance(refined, 100, 0.9, 2, spread, config)
    np.testing.assert_allclose(combined[0, 0], (1 + 0.1**2) * 1e-4 + 0.5 / 2)


def test_floor_adds_position_and_rotation_variances():
    config = CovarianceConfig(min_position_sigma_m=0.1, min_yaw_sigma_deg=1.0)
    out = with_floor(np.zeros((6, 6)), config)
    np.testing.assert_allclose(np.diag(out), [0.01] * 3 + [np.radians(1.0) ** 2] * 3)
