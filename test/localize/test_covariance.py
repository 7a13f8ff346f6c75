"""Covariance model: lever-arm propagation to base_link, evidence inflation, between-view spread, floor,
the map's pose error and the map points' depth error."""

import numpy as np
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.panorama_set import PanoramaRecord
from geoloc_ros.localize.config import CovarianceConfig
from geoloc_ros.localize.covariance import (
    ViewSolution,
    base_covariance,
    between_view_covariance,
    camera_covariance,
    depth_covariance,
    depth_relative_sigmas,
    map_covariance,
    map_sensitivities,
    panorama_pose_sigmas,
    pose_deviation,
    with_floor,
)
from geoloc_ros.localize.pose import project, refine_pose

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


def _scene(rng: np.random.Generator) -> tuple[PinholeCamera, Pose3D, np.ndarray, np.ndarray, np.ndarray]:
    """A camera looking along +x at façade points from two panoramas (left and right of the street)."""
    camera = PinholeCamera.from_hfov(640, 480, 60.0)
    pose = Pose3D.from_xyz_ypr([0.0, 0.0, 1.5], 0.0).compose(MOUNTING.base_to_optical())
    n = 120
    x = rng.uniform(8.0, 30.0, n)
    side = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    points = np.column_stack([x, side * rng.uniform(5.0, 7.0, n), rng.uniform(0.5, 8.0, n)])
    panorama = (side < 0).astype(np.int64)
    centres = np.array([[15.0, 1.0, 2.5], [25.0, -1.0, 2.5]])
    return camera, pose, points, panorama, centres


def _move(points: np.ndarray, centre: np.ndarray, d: np.ndarray) -> np.ndarray:
    c, s = np.cos(d[2]), np.sin(d[2])
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return centre + (points - centre) @ rotation.T + np.array([d[0], d[1], 0.0])


def test_map_sensitivities_match_a_re_solve_with_a_moved_panorama():
    rng = np.random.default_rng(1)
    camera, pose, points, panorama, centres = _scene(rng)
    uv, _ = project(pose, points, camera)
    refined = refine_pose(pose, uv, points, camera, 10, 1e6, 0.5)
    panoramas, s = map_sensitivities(refined.jacobian, refined.weights, points, panorama, centres)
    assert panoramas.tolist() == [0, 1]
    for p in (0, 1):
        d = np.array([0.05, -0.03, np.radians(0.2)])
        moved = points.copy()
        rows = panorama == p
        moved[rows] = _move(points[rows], centres[p], d)
        again = refine_pose(pose, uv, moved, camera, 20, 1e6, 0.5)
        np.testing.assert_allclose(
            pose_deviation(again.pose, refined.pose),
            s[p] @ d,
            atol=1e-2 * np.linalg.norm(s[p] @ d) + 1e-6,  # first order
        )
    # Every point from one panorama: the camera moves rigidly with it (position and yaw).
    _, alone = map_sensitivities(
        refined.jacobian, refined.weights, points, np.zeros(len(points), int), centres
    )
    np.testing.assert_allclose(alone[0][[0, 1, 5]][:, :2], np.eye(3)[:, :2], atol=1e-6)
    np.testing.assert_allclose(alone[0][5, 2], 1.0, atol=1e-6)


def test_map_covariance_is_calibrated_against_monte_carlo_map_errors():
    """Random panorama errors (independent, then fully shared): the propagated 95 % ellipse holds."""
    rng = np.random.default_rng(2)
    camera, pose, points, panorama, centres = _scene(rng)
    uv, _ = project(pose, points, camera)
    refined = refine_pose(pose, uv, points, camera, 10, 1e6, 0.5)
    _, s = map_sensitivities(refined.jacobian, refined.weights, points, panorama, centres)
    sigma_m, sigma_rad = np.array([1.0, 0.5]), np.radians([1.5, 1.0])
    for correlation in (0.0, 1.0):
        covariance = map_covariance(s, sigma_m, sigma_rad, correlation)[np.ix_([0, 1, 5], [0, 1, 5])]
        inside, trials = 0, 200
        for _ in range(trials):
            shared = rng.normal(size=3)
            moved = points.copy()
            for p in (0, 1):
                draw = shared if correlation == 1.0 else rng.normal(size=3)
                d = draw * np.array([sigma_m[p], sigma_m[p], sigma_rad[p]])
                moved[panorama == p] = _move(points[panorama == p], centres[p], d)
            again = refine_pose(pose, uv, moved, camera, 10, 1e6, 0.5)
            e = pose_deviation(again.pose, refined.pose)[[0, 1, 5]]
            inside += float(e @ np.linalg.solve(covariance, e)) <= chi2.ppf(0.95, 3)
        # Binomial(200, 0.95): 3.1 standard deviations either side of 190 (linearisation included).
        assert 180 <= inside <= 199, (correlation, inside)


def test_plane_depth_adds_to_the_stated_position_sigma_only_on_a_map_stating_one():
    def record(pano_id, **extra):
        return PanoramaRecord(id=pano_id, lat=48.0, lon=2.0, heading_deg=0.0, image="i.jpg", **extra)

    config = CovarianceConfig(plane_depth_sigma_m=0.05)
    stated = {"position_sigma_m": 0.02, "heading_sigma_deg": 0.1}
    records = [
        record("range", depth="d.png", **stated),
        record("plane", depth_gsv="d.xml", **stated),
        record("none", **stated),
    ]
    sigma_m, sigma_rad, uncertain = panorama_pose_sigmas(records, config)
    assert uncertain
    np.testing.assert_allclose(sigma_m, [0.02, np.hypot(0.02, 0.05), 0.02])
    np.testing.assert_allclose(sigma_rad, np.radians([0.1] * 3))
    # A map stating exact poses keeps the exact-map model, whatever its depth.
    exact = [record("plane", depth_gsv="d.xml")]
    sigma_m, _, uncertain = panorama_pose_sigmas(exact, config)
    assert not uncertain and sigma_m.tolist() == [0.0]
    off = CovarianceConfig(map_uncertainty=False, plane_depth_sigma_m=0.05)
    assert not panorama_pose_sigmas(records, off)[2]


def _with_depth_error(points: np.ndarray, origins: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """Each point moved along its bearing from its origin by ``relative`` (n,) of its range."""
    return origins + (points - origins) * (1.0 + relative)[:, None]


def test_depth_covariance_is_calibrated_against_monte_carlo_depth_errors():
    """Random depth errors of each point along its panorama's bearing (0.5 % and 1 % of the range, the
    first-order regime): the re-solved poses spread as the propagated covariance says. Beyond it the
    propagation is first order only: with 1500 draws in this scene, 1-2 % errors put 93.4 % inside
    (a 2 cm forward bias of second order), and the forward axis spreads 1.2x wider at 2-4 % and 1.9x
    at 5-10 % than propagated."""
    rng = np.random.default_rng(3)
    camera, pose, points, panorama, centres = _scene(rng)
    uv, _ = project(pose, points, camera)
    refined = refine_pose(pose, uv, points, camera, 10, 1e6, 0.5)
    relative = np.array([0.005, 0.01])[panorama]
    origins = centres[panorama]
    covariance = depth_covariance(refined.jacobian, refined.weights, points, origins, relative)
    trials = 400
    deviations = np.array(
        [
            pose_deviation(
                refine_pose(
                    pose,
                    uv,
                    _with_depth_error(points, origins, relative * rng.normal(size=len(points))),
                    camera,
                    10,
                    1e6,
                    0.5,
                ).pose,
                refined.pose,
            )
            for _ in range(trials)
        ]
    )
    planar = np.array([0, 1, 5])
    # A sample variance of 400 draws is within 3 * sqrt(2 / 400) = 21 % of the true one (3 sigma);
    # 30 % leaves room for the first-order propagation.
    np.testing.assert_allclose(np.var(deviations[:, planar], axis=0), np.diag(covariance)[planar], rtol=0.3)
    block = covariance[np.ix_(planar, planar)]
    inside = sum(float(e @ np.linalg.solve(block, e)) <= chi2.ppf(0.95, 3) for e in deviations[:, planar])
    # Binomial(400, 0.95): 380 +- 13.8 at 3.2 standard deviations.
    assert 366 <= inside <= 394, inside


def test_depth_covariance_grows_with_fewer_inliers_and_vanishes_for_exact_depth():
    rng = np.random.default_rng(4)
    camera, pose, points, panorama, centres = _scene(rng)
    uv, _ = project(pose, points, camera)

    def position_variance(rows: np.ndarray, sigma: float) -> float:
        refined = refine_pose(pose, uv[rows], points[rows], camera, 10, 1e6, 0.5)
        relative = np.full(len(rows), sigma)
        cov = depth_covariance(
            refined.jacobian, refined.weights, points[rows], centres[panorama[rows]], relative
        )
        return float(np.trace(cov[:2, :2]))

    every = np.arange(len(points))
    few = np.concatenate([every[:15], every[-15:]])  # 30 of 120, both sides of the street
    many_var, few_var = position_variance(every, 0.05), position_variance(few, 0.05)
    assert few_var > 2.0 * many_var > 0.0  # independent errors: about 1 / n
    assert position_variance(every, 0.0) == 0.0  # exact range: nothing added


def test_depth_sigmas_follow_each_panoramas_depth_model():
    def record(pano_id, **extra):
        return PanoramaRecord(id=pano_id, lat=48.0, lon=2.0, heading_deg=0.0, image="i.jpg", **extra)

    records = [
        record("range", depth="d.png"),
        record("plane", depth_gsv="d.xml"),
        record("plane_png", depth="d.xml", depth_format="streetview"),
        record("none"),
    ]
    config = CovarianceConfig.model_validate(
        {"depth_error": {"exact_relative_sigma": 0.01, "plane_relative_sigma": 0.08}}
    )
    np.testing.assert_allclose(depth_relative_sigmas(records, config), [0.01, 0.08, 0.08, 0.0])
    np.testing.assert_allclose(depth_relative_sigmas(records, CovarianceConfig())[[0, 3]], [0.0, 0.0])
