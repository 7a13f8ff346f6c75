import numpy as np
import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.views import SynthesizedView, ViewSpec, view_pose
from geoloc_ros.mapping.extract import feature_mask, keypoint_points

CAMERA = PinholeCamera.from_hfov(160, 120, 60.0)


def make_view(depth: np.ndarray, valid: np.ndarray | None = None, hole_ratio: float = 0.0) -> SynthesizedView:
    pose = view_pose([12.0, -3.0, 2.5], yaw_deg=70.0, pitch_deg=5.0)
    spec = ViewSpec("p0", "rectified", 0.0, 70.0, 5.0, pose)
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    mask = np.full(depth.shape, 255, np.uint8) if valid is None else valid
    return SynthesizedView(spec, CAMERA, image, depth.astype(np.float32), mask, hole_ratio)


def plane_depth(normal: np.ndarray, distance: float) -> np.ndarray:
    """z-depth of the plane n . X = d (optical frame) at every pixel centre."""
    rays = CAMERA.pixel_grid_rays()
    return distance / (rays @ normal)


def test_points_reproject_onto_their_keypoints_at_the_view_depth():
    normal = np.array([0.3, -0.1, 1.0]) / np.linalg.norm([0.3, -0.1, 1.0])
    depth = plane_depth(normal, 8.0)
    view = make_view(depth)
    rng = np.random.default_rng(0)
    keypoints = rng.uniform([0, 0], [CAMERA.width - 1, CAMERA.height - 1], size=(200, 2)).astype(np.float32)
    points = keypoint_points(view, keypoints, max_depth_step=0.1)
    assert points.dtype == np.float32 and points.shape == (200, 3) and np.all(np.isfinite(points))
    optical = view.T_map_optical.inverse().transform_points(points.astype(np.float64))
    uv, in_front = CAMERA.project(optical)
    assert np.all(in_front)
    # float32 map coordinates a few metres from the origin: well under a hundredth of a pixel.
    assert np.abs(uv - keypoints).max() < 0.01
    # On the plane: z matches the plane's depth along each keypoint's ray.
    rays = CAMERA.normalized_rays(keypoints)
    assert np.allclose(optical[:, 2], 8.0 / (rays @ normal), rtol=2e-3)
    # And the view's depth map at the nearest pixel, within the change of depth over half a pixel.
    nearest = depth[np.rint(keypoints[:, 1]).astype(int), np.rint(keypoints[:, 0]).astype(int)]
    assert np.allclose(optical[:, 2], nearest, rtol=0.02)


def test_no_point_without_depth_or_on_a_depth_edge():
    depth = np.full((CAMERA.height, CAMERA.width), 10.0)
    depth[:, 80:] = 30.0  # a depth edge between columns 79 and 80
    depth[:20, :] = 0.0  # sky
    view = make_view(depth)
    keypoints = np.array([[40.0, 60.0], [79.5, 60.0], [100.0, 60.0], [40.0, 10.0], [40.0, 19.5]], np.float32)
    points = keypoint_points(view, keypoints, max_depth_step=0.1)
    finite = np.all(np.isfinite(points), axis=1)
    assert finite.tolist() == [True, False, True, False, False]
    optical = view.T_map_optical.inverse().transform_points(points[finite].astype(np.float64))
    assert np.allclose(optical[:, 2], [10.0, 30.0], rtol=1e-5)
    assert keypoint_points(view, np.zeros((0, 2), np.float32), 0.1).shape == (0, 3)


def test_keypoints_on_the_last_row_and_column_use_the_border_pixels():
    view = make_view(np.full((CAMERA.height, CAMERA.width), 5.0))
    corner = np.array([[CAMERA.width - 1, CAMERA.height - 1], [0.0, 0.0]], np.float32)
    points = keypoint_points(view, corner, 0.1)
    assert np.all(np.isfinite(points))


@pytest.mark.parametrize("erode", [0, 3])
def test_feature_mask_keeps_away_from_holes(erode):
    depth = np.full((CAMERA.height, CAMERA.width), 5.0)
    assert feature_mask(make_view(depth), erode) is None  # rectified views: no mask
    valid = np.full(depth.shape, 255, np.uint8)
    valid[:, :50] = 0
    mask = feature_mask(make_view(depth, valid, hole_ratio=50 / 160), erode)
    assert mask is not None
    first_allowed = int(np.flatnonzero(mask[60])[0])
    assert first_allowed == 50 + erode
    assert mask[0, -1] == 255  # the image border is not a hole
