"""PnP-RANSAC, refinement covariance and the essential-matrix fallback on synthetic correspondences."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import optical_pose_from_body
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize import pose as pose_module
from geoloc_ros.localize.config import PoseConfig
from geoloc_ros.localize.covariance import pose_deviation
from geoloc_ros.localize.pose import (
    intersect_bearings,
    mean_rotation,
    pnp_ransac,
    project,
    refine_pose,
    relative_pose,
)

CAMERA = PinholeCamera.from_hfov(640, 480, 57.6)


def camera_pose(x: float, y: float, yaw: float) -> Pose3D:
    """T_map_optical of a level camera 1.5 m above the ground looking along ``yaw``."""
    return optical_pose_from_body(Pose3D.from_xyz_ypr([x, y, 1.5], yaw))


def scene(pose: Pose3D, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` map points 5-40 m in front of ``pose`` that project inside the image, and their pixels."""
    uv = rng.uniform([20, 20], [620, 460], (n, 2))
    depth = rng.uniform(5.0, 40.0, n)
    points = pose.transform_points(CAMERA.backproject(uv, depth))
    return uv, points


@pytest.mark.parametrize("backend", ["poselib", "opencv"])
def test_pnp_ransac_recovers_the_pose_despite_outliers(backend):
    rng = np.random.default_rng(3)
    truth = camera_pose(12.0, -4.0, 0.7)
    uv, points = scene(truth, 300, rng)
    uv = uv + rng.normal(0.0, 0.5, uv.shape)
    outliers = rng.random(len(uv)) < 0.5
    uv[outliers] = rng.uniform([0, 0], [640, 480], (int(outliers.sum()), 2))
    result = pnp_ransac(uv, points, CAMERA, PoseConfig(backend=backend))
    assert result is not None
    assert np.linalg.norm(result.pose.translation - truth.translation) < 0.1
    assert np.degrees(np.linalg.norm(pose_deviation(result.pose, truth)[3:])) < 0.2
    # The inliers are (nearly) the uncorrupted correspondences.
    assert np.mean(result.inliers[~outliers]) > 0.95
    assert np.mean(result.inliers[outliers]) < 0.05


def test_without_poselib_both_ransacs_fall_back_to_opencv(monkeypatch):
    """aarch64 (Jetson) has no poselib wheel: the default backend then runs OpenCV's USAC."""
    monkeypatch.setattr(pose_module, "poselib", None)
    assert pose_module.effective_backend(PoseConfig()) == "opencv"
    rng = np.random.default_rng(4)
    truth = camera_pose(3.0, 1.0, -0.4)
    uv, points = scene(truth, 200, rng)
    result = pnp_ransac(uv + rng.normal(0.0, 0.5, uv.shape), points, CAMERA, PoseConfig())
    assert result is not None
    assert np.linalg.norm(result.pose.translation - truth.translation) < 0.1
    reference = camera_pose(0.0, 0.0, -0.4)
    uv_ref, _ = project(reference, points, CAMERA)
    relative = relative_pose(uv, uv_ref, reference, 0, CAMERA, PoseConfig())
    assert relative is not None
    expected = truth.translation - reference.translation
    assert np.degrees(np.arccos(relative.direction_map @ expected / np.linalg.norm(expected))) < 1.0


def test_pnp_ransac_gives_nothing_for_too_few_points():
    assert pnp_ransac(np.zeros((3, 2)), np.ones((3, 3)), CAMERA, PoseConfig()) is None


def test_refine_pose_converges_and_its_covariance_is_consistent():
    """Normalised estimation error squared over repeated noisy trials averages the 6 degrees of freedom."""
    rng = np.random.default_rng(7)
    truth = camera_pose(-3.0, 8.0, -1.2)
    sigma_px = 1.0
    nees = []
    for _ in range(150):
        uv, points = scene(truth, 60, rng)
        noisy = uv + rng.normal(0.0, sigma_px, uv.shape)
        start = Pose3D.from_xyz_ypr(truth.translation + rng.normal(0, 0.3, 3)).compose(
            Pose3D(truth.rotation, np.zeros(3))
        )
        refined = refine_pose(start, noisy, points, CAMERA, iterations=10, huber_px=1e6, min_sigma_px=0.01)
        error = pose_deviation(refined.pose, truth)
        nees.append(float(error @ np.linalg.solve(refined.covariance, error)))
        assert abs(refined.sigma_px - sigma_px) < 0.35
    mean = float(np.mean(nees))
    # chi-square with 6 dof: mean 6; 150 trials put the sample mean within about ±0.6 of it.
    assert 4.8 < mean < 7.4, mean


def test_refine_pose_reports_residuals_at_the_solution():
    rng = np.random.default_rng(1)
    truth = camera_pose(0.0, 0.0, 0.3)
    uv, points = scene(truth, 40, rng)
    refined = refine_pose(truth, uv, points, CAMERA, 5, 2.0, 0.5)
    assert np.all(refined.residuals_px < 1e-6)
    assert np.all(refined.in_front)
    assert refined.sigma_px == 0.5  # the floor, since the data is exact
    projected, depth = project(refined.pose, points, CAMERA)
    np.testing.assert_allclose(projected, uv, atol=1e-6)
    assert np.all(depth > 0)


@pytest.mark.parametrize("backend", ["poselib", "opencv"])
def test_essential_fallback_triangulates_the_query_centre_from_two_views(backend):
    rng = np.random.default_rng(5)
    query = camera_pose(10.0, 2.0, 0.1)
    references = [camera_pose(0.0, 0.0, 0.0), camera_pose(4.0, 6.0, -0.3)]
    uv_query, points = scene(query, 400, rng)
    relatives = []
    for view, reference in enumerate(references):
        uv_ref, depth = project(reference, points, CAMERA)
        visible = (depth > 0) & np.all((uv_ref > 0) & (uv_ref < [640, 480]), axis=1)
        relative = relative_pose(
            uv_query[visible] + rng.normal(0, 0.3, (int(visible.sum()), 2)),
            uv_ref[visible],
            reference,
            view,
            CAMERA,
            PoseConfig(backend=backend),
        )
        assert relative is not None
        relatives.append(relative)
        # The direction points from the reference towards the query.
        expected = query.translation - reference.translation
        assert np.degrees(np.arccos(relative.direction_map @ expected / np.linalg.norm(expected))) < 1.0
    fix = intersect_bearings(relatives, np.radians(0.5))
    assert fix is not None
    assert np.linalg.norm(fix.centre - query.translation) < 0.5
    assert np.all(np.linalg.eigvalsh(fix.covariance) > 0)
    rotation = mean_rotation([r.rotation_map_query for r in relatives], [1.0, 1.0])
    assert np.degrees(np.linalg.norm(pose_deviation(Pose3D(rotation, query.translation), query)[3:])) < 0.5


def test_bearings_from_one_centre_or_one_view_do_not_fix_a_position():
    rng = np.random.default_rng(2)
    query = camera_pose(10.0, 0.0, 0.0)
    reference = camera_pose(0.0, 0.0, 0.0)
    uv_query, points = scene(query, 300, rng)
    uv_ref, depth = project(reference, points, CAMERA)
    visible = (depth > 0) & np.all((uv_ref > 0) & (uv_ref < [640, 480]), axis=1)
    relative = relative_pose(uv_query[visible], uv_ref[visible], reference, 0, CAMERA, PoseConfig())
    assert relative is not None
    assert intersect_bearings([relative], np.radians(0.5)) is None
    # Two views at the same centre: the bearings coincide, the range along them is unknown.
    assert intersect_bearings([relative, relative], np.radians(0.5)) is None
    # Two views of one panorama (centres centimetres apart) whose bearings differ by noise: the lines
    # meet next to the centre, which is no fix either.
    for turn, side in ((-5.0, 1.0), (5.0, -1.0), (1.0, -1.0)):
        turned = Rotation.from_euler("z", turn, degrees=True).as_matrix() @ relative.direction_map
        left = relative.reference_centre + side * 0.05 * np.cross([0.0, 0.0, 1.0], relative.direction_map)
        twin = replace(relative, direction_map=turned, reference_centre=left)
        assert intersect_bearings([relative, twin], np.radians(1.0)) is None


def test_subset_step_points_to_the_pose_a_subset_prefers():
    rng = np.random.default_rng(4)
    truth = camera_pose(2.0, 3.0, 0.4)
    uv, points = scene(truth, 80, rng)
    # The second half of the correspondences comes from a map shifted by 0.2 m east (a view with a
    # georeferencing error): the joint pose sits between, that half alone pulls 0.2 m east.
    shifted = points.copy()
    shifted[40:] += [0.2, 0.0, 0.0]
    joint = refine_pose(truth, uv, shifted, CAMERA, 10, 1e6, 0.01)
    assert joint.subset_step(np.arange(80)) is not None
    np.testing.assert_allclose(joint.subset_step(np.arange(80)), 0.0, atol=1e-9)
    first, second = joint.subset_step(np.arange(40)), joint.subset_step(np.arange(40, 80))
    assert first is not None and second is not None
    own = [
        refine_pose(joint.pose, uv[s], shifted[s], CAMERA, 10, 1e6, 0.01)
        for s in (slice(0, 40), slice(40, 80))
    ]
    np.testing.assert_allclose(first, pose_deviation(own[0].pose, joint.pose), atol=2e-3)
    np.testing.assert_allclose(second, pose_deviation(own[1].pose, joint.pose), atol=2e-3)
    assert second[0] - first[0] > 0.15
    assert joint.subset_step(np.arange(2)) is None  # two points do not fix six degrees of freedom
