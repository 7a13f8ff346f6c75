"""The per-panorama consistency gate: a mislocated panorama is found; agreeing ones are kept."""

from __future__ import annotations

import numpy as np

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.localize.matching import Matches
from geoloc_ros.localize.pose import project, refine_pose


def gate_case(offset_m: float, seed: int = 0, depth_sigma: float = 0.0):
    """Three panoramas (one view each) seen by one camera; panorama 2's points are ``offset_m`` off."""
    rng = np.random.default_rng(seed)
    camera = PinholeCamera.from_hfov(640, 480, 60.0)
    pose = Pose3D.from_xyz_ypr([0.0, 0.0, 1.5], 0.0).compose(CameraMounting().base_to_optical())
    per = 60
    x = rng.uniform(10.0, 35.0, 3 * per)
    y = np.repeat([6.0, -6.0, 6.5], per) + rng.uniform(-0.5, 0.5, 3 * per)
    points = np.column_stack([x, y, rng.uniform(0.5, 8.0, 3 * per)])
    uv, depth = project(pose, points, camera)
    assert np.all(depth > 0)
    uv = uv + rng.normal(0.0, 0.5, uv.shape)
    slots = np.repeat([0, 1, 2], per).astype(np.int32)
    stated = points.copy()
    stated[slots == 2, 1] += offset_m  # the map states panorama 2 offset_m off
    matches = Matches(
        views=np.array([0, 1, 2], np.int64),
        query_index=np.arange(3 * per, dtype=np.int64),
        view_slot=slots,
        reference_index=np.arange(3 * per, dtype=np.int64),
        distance_ratio=np.full(3 * per, 0.5, np.float32),
        query_xy=uv,
        reference_xy=uv,
        points_map=stated,
    )
    localizer = Localizer.__new__(Localizer)
    localizer.config = LocalizerConfig()
    localizer.view_panorama = np.array([0, 1, 2])
    localizer.panorama_centres = np.array([[15.0, 0.5, 2.5], [20.0, -0.5, 2.5], [30.0, 0.3, 2.5]])
    localizer.panorama_sigma_m = np.full(3, 0.5)
    localizer.panorama_sigma_rad = np.radians(np.full(3, 1.0))
    localizer.depth_sigma = np.full(3, depth_sigma)
    rows = np.arange(3 * per)
    refined = refine_pose(pose, uv, stated, camera, 10, 2.0, 0.5)
    return localizer, matches, rows, refined


def test_a_mislocated_panorama_is_the_one_that_disagrees():
    localizer, matches, rows, refined = gate_case(offset_m=4.0)
    assert localizer._disagreeing_panorama(matches, rows, refined) == 2


def test_a_mislocated_panorama_is_found_under_plane_model_depth_too():
    # The depth term widens each panorama's own pose, not so much that 4 m hides in it.
    localizer, matches, rows, refined = gate_case(offset_m=4.0, depth_sigma=0.05)
    assert localizer._disagreeing_panorama(matches, rows, refined) == 2


def test_panoramas_within_their_stated_uncertainty_are_kept():
    localizer, matches, rows, refined = gate_case(offset_m=0.3)
    assert localizer._disagreeing_panorama(matches, rows, refined) is None
