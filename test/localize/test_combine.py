"""Combining panoramas' own poses: independent map errors average out, the covariance holds
(Monte Carlo with fixed seeds), and bad inputs are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import chi2

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.combine import PanoramaSolution, combine_panorama_solutions, disagreement
from geoloc_ros.localize.covariance import map_sensitivities, pose_deviation
from geoloc_ros.localize.pose import project, refine_pose, rotation_from_vector

PLANAR = np.array([0, 1, 5])
SIGMA_M, SIGMA_RAD = 1.0, np.radians(1.5)


def _scene(rng: np.random.Generator):
    """A camera looking along +x; a near panorama with many points (left façade), two farther ones
    with fewer (right façade, a façade across the street ahead)."""
    camera = PinholeCamera.from_hfov(640, 480, 70.0)
    pose = Pose3D.from_xyz_ypr([0.0, 0.0, 1.5], 0.0).compose(CameraMounting().base_to_optical())
    counts = (150, 40, 40)
    left = np.column_stack([rng.uniform(8, 20, counts[0]), rng.uniform(5, 7, counts[0])])
    right = np.column_stack([rng.uniform(15, 30, counts[1]), -rng.uniform(5, 7, counts[1])])
    ahead = np.column_stack([rng.uniform(38, 40, counts[2]), rng.uniform(-8, 8, counts[2])])
    xy = np.vstack([left, right, ahead])
    points = np.column_stack([xy, rng.uniform(0.5, 8.0, len(xy))])
    panorama = np.repeat([0, 1, 2], counts)
    centres = np.array([[12.0, 1.0, 2.5], [24.0, -1.5, 2.5], [36.0, 0.5, 2.5]])
    return camera, pose, points, panorama, centres


def _move(points: np.ndarray, centre: np.ndarray, d: np.ndarray) -> np.ndarray:
    c, s = np.cos(d[2]), np.sin(d[2])
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return centre + (points - centre) @ rotation.T + np.array([d[0], d[1], 0.0])


def _trial(rng, scene, correlation, true=(SIGMA_M, SIGMA_RAD), stated_sigma=(SIGMA_M, SIGMA_RAD)):
    """One draw of panorama errors (σ ``true``) and pixel noise, the panoramas stating
    ``stated_sigma``: (pooled error, combined error, combination, solutions)."""
    camera, pose, points, panorama, centres = scene
    uv, _ = project(pose, points, camera)
    uv = uv + rng.normal(0.0, 0.5, uv.shape)
    shared = rng.normal(size=3)
    stated = points.copy()
    for p in range(3):
        draw = np.sqrt(correlation) * shared + np.sqrt(1.0 - correlation) * rng.normal(size=3)
        rows = panorama == p
        stated[rows] = _move(points[rows], centres[p], draw * [true[0], true[0], true[1]])
    pooled = refine_pose(pose, uv, stated, camera, 10, 1e6, 0.5)
    solutions = []
    for p in range(3):
        rows = np.flatnonzero(panorama == p)
        own = refine_pose(pooled.pose, uv[rows], stated[rows], camera, 10, 1e6, 0.5)
        _, s = map_sensitivities(own.jacobian, own.weights, stated[rows], panorama[rows], centres)
        deviation = pose_deviation(own.pose, pooled.pose)
        solutions.append(PanoramaSolution(p, deviation, own.covariance, s[0], *stated_sigma, len(rows)))
    combination = combine_panorama_solutions(solutions, correlation)
    step = combination.deviation
    combined = Pose3D(
        rotation_from_vector(step[3:]) @ pooled.pose.rotation, pooled.pose.translation + step[:3]
    )
    return pose_deviation(pooled.pose, pose), pose_deviation(combined, pose), combination, solutions


@pytest.mark.parametrize("correlation", [0.0, 0.5])
def test_combination_averages_map_errors_and_its_ellipse_holds(correlation):
    rng = np.random.default_rng(3)
    scene = _scene(rng)
    pooled_sq, combined_sq, inside, trials = [], [], 0, 200
    for _ in range(trials):
        pooled_error, combined_error, combination, _ = _trial(rng, scene, correlation)
        pooled_sq.append(float(pooled_error[:2] @ pooled_error[:2]))
        combined_sq.append(float(combined_error[:2] @ combined_error[:2]))
        e = combined_error[PLANAR]
        covariance = combination.covariance[np.ix_(PLANAR, PLANAR)]
        inside += float(e @ np.linalg.solve(covariance, e)) <= chi2.ppf(0.95, 3)
    # The near panorama dominates the pooled solution (150 of 230 inliers); weighting every
    # panorama by its map error instead cuts the planar RMS error (by up to sqrt(3), less when the
    # errors are correlated). Over 200 draws the RMS ratio is known to a few per cent.
    ratio = np.sqrt(np.mean(combined_sq) / np.mean(pooled_sq))
    assert ratio < (0.7 if correlation == 0.0 else 0.85), ratio
    # Binomial(200, 0.95): 190 expected, 3.1 standard deviations either side (linearisation included).
    assert 180 <= inside <= 199, inside
    assert combination.shares.sum() == pytest.approx(1.0, abs=1e-6)


def test_map_dominated_panoramas_count_equally_whatever_their_inlier_counts():
    rng = np.random.default_rng(4)
    _, _, combination, _ = _trial(rng, _scene(rng), 0.5)
    # 150 vs 40 inliers, but each panorama's map error (1 m) dwarfs its pixel noise.
    assert np.all(combination.shares > 0.15), combination.shares
    assert np.all(combination.shares < 0.6), combination.shares


def test_bad_inputs_are_refused_and_one_solution_is_itself():
    solution = PanoramaSolution(0, np.ones(6), np.eye(6), np.zeros((6, 3)), 1.0, 0.01, 20)
    with pytest.raises(ValueError, match="at least one"):
        combine_panorama_solutions([], 0.5)
    with pytest.raises(ValueError, match="correlation"):
        combine_panorama_solutions([solution], 1.5)
    broken = PanoramaSolution(1, np.zeros(6), np.full((6, 6), np.nan), np.zeros((6, 3)), 1.0, 0.01, 20)
    with pytest.raises(ValueError, match="non-finite"):
        combine_panorama_solutions([solution, broken], 0.5)
    one = combine_panorama_solutions([solution], 0.0)
    np.testing.assert_allclose(one.deviation, np.ones(6), atol=1e-6)
    np.testing.assert_allclose(one.covariance, np.eye(6), atol=1e-6)


def test_panoramas_that_disagree_beyond_their_covariance_widen_the_combination():
    """A map that states centimetres but is off by decimetres: the spread of the panoramas' own poses
    shows it (the Birge ratio), and the combined ellipse widens; panoramas that agree change nothing."""
    rng = np.random.default_rng(5)
    scene = _scene(rng)
    stated, true = (0.01, np.radians(0.01)), (0.3, np.radians(0.3))
    inside, inside_unwidened, trials = 0, 0, 200
    for _ in range(trials):
        _, error, combination, solutions = _trial(rng, scene, 0.0, true, stated)
        r = max(1.0, disagreement(solutions, combination.deviation))
        e = error[PLANAR]
        covariance = combination.covariance[np.ix_(PLANAR, PLANAR)]
        inside += float(e @ np.linalg.solve(covariance, e)) <= chi2.ppf(0.95, 3)
        inside_unwidened += float(e @ np.linalg.solve(covariance / r, e)) <= chi2.ppf(0.95, 3)
    # Three panoramas give a noisy spread (6 degrees of freedom), so the widened ellipse still falls
    # short of 95 %, but it holds far more often than the stated centimetres do.
    assert inside_unwidened < 0.3 * trials, inside_unwidened
    assert inside >= inside_unwidened + 0.3 * trials, (inside, inside_unwidened)
    # Panoramas that agree exactly: the combination's covariance is the stated one.
    same = PanoramaSolution(0, np.zeros(6), np.eye(6) * 0.01, np.zeros((6, 3)), 0.0, 0.0, 50)
    both = combine_panorama_solutions([same, replace(same, panorama=1)], 0.0)
    np.testing.assert_allclose(both.covariance, np.eye(6) * 0.005, rtol=1e-6)
