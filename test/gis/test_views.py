"""Rectified views: geometry against an independent per-pixel reference, poses, depth, config."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import validate_mapping
from geoloc_ros.errors import ConfigError
from geoloc_ros.gis.depth.streetview import load_depth_map_file
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.errors import ViewSynthesisError
from geoloc_ros.gis.views import (
    ViewCameraConfig,
    ViewSynthesisConfig,
    render_rectified_view,
    render_rectified_views,
    view_specs,
    view_yaws_deg,
)

PANORAMA = "pano_lepFQSQxEEGAw4PPqR_9Ag.jpg"


@pytest.fixture(scope="module")
def real_panorama(shared_dir: Path) -> np.ndarray:
    path = shared_dir / "fixtures" / "gsv" / PANORAMA
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        pytest.skip(f"{path} is missing")
    return image


def reference_view(
    panorama: np.ndarray, heading_deg: float, yaw_deg: float, pitch_deg: float, camera: PinholeCamera
) -> np.ndarray:
    """Per-pixel loop: view ray from compass vectors -> bearing/elevation -> hand bilinear sample."""
    h, w = panorama.shape[:2]
    pano = panorama.astype(float)
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    # ENU basis of a camera looking along compass `yaw`, tilted down by `pitch`.
    forward = np.array([math.cos(p) * math.sin(y), math.cos(p) * math.cos(y), -math.sin(p)])
    right = np.array([math.cos(y), -math.sin(y), 0.0])
    down = np.cross(forward, right)
    out = np.zeros((camera.height, camera.width, 3))
    for row in range(camera.height):
        for col in range(camera.width):
            ray = forward + (col - camera.cx) / camera.fx * right + (row - camera.cy) / camera.fy * down
            bearing = math.degrees(math.atan2(ray[0], ray[1]))
            elevation = math.degrees(math.asin(ray[2] / np.linalg.norm(ray)))
            u = (((bearing - heading_deg) / 360.0 + 0.5) % 1.0) * w
            v = min(max((90.0 - elevation) / 180.0 * h - 0.5, 0.0), h - 1.0)
            u0, v0 = math.floor(u), math.floor(v)
            fu, fv = u - u0, v - v0
            v1 = min(v0 + 1, h - 1)
            top = (1 - fu) * pano[v0, u0 % w] + fu * pano[v0, (u0 + 1) % w]
            bottom = (1 - fu) * pano[v1, u0 % w] + fu * pano[v1, (u0 + 1) % w]
            out[row, col] = (1 - fv) * top + fv * bottom
    return out


@pytest.mark.parametrize(
    ("relative_yaw", "pitch"),
    [(75.0, 0.0), (180.0, 0.0), (-30.0, 12.0)],  # 180°: the view straddles the 0/360° seam
)
def test_rectified_view_of_real_panorama_matches_independent_remap(
    real_panorama: np.ndarray, relative_yaw: float, pitch: float
) -> None:
    heading = 333.9
    camera = PinholeCamera.from_hfov(96, 72, 57.6)
    pose = panorama_body_pose([10.0, -5.0, 1.0], heading)
    yaw = (heading + relative_yaw) % 360.0
    spec = view_specs("p", "rectified", 0.0, pose.translation, [yaw], pitch_deg=pitch)[0]
    view = render_rectified_view(spec, camera, real_panorama, None, pose)
    expected = reference_view(real_panorama, heading, yaw, pitch, camera)
    diff = np.abs(view.image.astype(float) - expected)
    # cv2.remap interpolates with 5-bit fixed-point weights: small rounding differences only.
    assert diff.mean() < 0.5
    assert np.percentile(diff, 99.5) <= 2.0
    assert view.hole_ratio == 0.0 and np.all(view.valid == 255)
    assert np.all(view.depth == 0)  # no range map given


def test_view_yaws_and_poses() -> None:
    config = ViewSynthesisConfig()
    yaws = view_yaws_deg(333.9, config)
    np.testing.assert_allclose(yaws, np.mod(333.9 + 30.0 * np.arange(12), 360.0))
    north = view_yaws_deg(333.9, config.model_copy(update={"yaw_origin": "north"}))
    np.testing.assert_allclose(north, 30.0 * np.arange(12))
    position = np.array([3.0, 4.0, 5.0])
    specs = view_specs("p", "rectified", 0.0, position, [0.0, 90.0, 225.0], pitch_deg=10.0)
    for spec, yaw in zip(specs, [0.0, 90.0, 225.0], strict=True):
        y, p = math.radians(yaw), math.radians(10.0)
        r = spec.T_map_optical.rotation
        np.testing.assert_allclose(
            r[:, 2], [math.cos(p) * math.sin(y), math.cos(p) * math.cos(y), -math.sin(p)], atol=1e-12
        )
        np.testing.assert_allclose(r[:, 0], [math.cos(y), -math.sin(y), 0.0], atol=1e-12)  # x = right, level
        np.testing.assert_allclose(spec.T_map_optical.translation, position)
        assert spec.kind == "rectified" and spec.offset_m == 0.0 and spec.yaw_deg == yaw
    assert specs[1].view_id == "p@+0.0m/090.0deg"


def test_rectified_depth_is_z_depth_of_the_scene(street_scene) -> None:
    image, ranges = street_scene.render_panorama(np.zeros(3), street_scene.bearing_deg, 1024)
    config = ViewSynthesisConfig(camera=ViewCameraConfig(width=96, height=72))
    camera = config.camera.pinhole()
    pose = panorama_body_pose(np.zeros(3), street_scene.bearing_deg)
    views = render_rectified_views(
        "p", image, ranges, pose, heading_deg=street_scene.bearing_deg, config=config, camera=camera
    )
    assert len(views) == 12
    for view in views[:4]:
        _, z_true = street_scene.render_pinhole(
            np.zeros(3), view.yaw_deg, 96, 72, camera.fx, camera.cx, camera.cy
        )
        known = (view.depth > 0) & (z_true > 0)
        assert np.array_equal(view.depth > 0, z_true > 0) or np.mean((view.depth > 0) != (z_true > 0)) < 0.01
        rel = np.abs(view.depth[known] - z_true[known]) / z_true[known]
        # Nearest-neighbour range lookup (no blending): at most a pixel's worth of error.
        assert np.median(rel) < 0.01
        assert np.percentile(rel, 95) < 0.05
        # points_map lands on the true surface points.
        rows, cols = np.nonzero(known)
        pts, ok = view.points_map(np.column_stack([cols, rows]))
        assert ok.all()
        dist = np.linalg.norm(pts, axis=1)
        assert np.median(np.abs(dist - street_scene.trace(np.zeros(3), pts / dist[:, None])[0]) / dist) < 0.01


def test_rectified_depth_from_real_street_view_ground(shared_dir: Path) -> None:
    path = shared_dir / "fixtures" / "gsv" / "M0zT0mYKzPobhRw0G3AXQg.xml"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    depth_map = load_depth_map_file(path)
    ranges = depth_map.range_map(1024, 512)
    heading = 333.92
    pose = panorama_body_pose(np.zeros(3), heading)
    camera = PinholeCamera.from_hfov(64, 48, 57.6)
    spec = view_specs("p", "rectified", 0.0, np.zeros(3), [heading], pitch_deg=40.0)[
        0
    ]  # looking down the road
    view = render_rectified_view(spec, camera, np.zeros((512, 1024, 3), np.uint8), ranges, pose)
    bottom = np.column_stack([np.arange(64), np.full(64, 47)])
    points, ok = view.points_map(bottom)
    assert ok.all()
    # The bottom row lies on the ground plane: n·p + d = 0 in the panorama body frame.
    ground = depth_map.ground_plane()
    body = (points - pose.translation) @ pose.rotation
    residual = body @ depth_map.normals[ground] + depth_map.distances[ground]
    assert np.max(np.abs(residual)) < 0.05
    assert np.all(points[:, 2] < -2.3)


def test_points_map_marks_unknown_depth() -> None:
    camera = PinholeCamera.from_hfov(8, 6, 60.0)
    pose = panorama_body_pose(np.zeros(3), 0.0)
    spec = view_specs("p", "rectified", 0.0, np.zeros(3), [0.0])[0]
    view = render_rectified_view(
        spec, camera, np.zeros((10, 20, 3), np.uint8), np.zeros((10, 20), np.float32), pose
    )
    points, ok = view.points_map([[1.0, 1.0], [3.2, 4.7]])
    assert not ok.any() and np.isnan(points).all()


def test_rectified_view_input_errors() -> None:
    camera = PinholeCamera.from_hfov(8, 6, 60.0)
    pose = panorama_body_pose(np.zeros(3), 0.0)
    spec = view_specs("p", "rectified", 0.0, np.zeros(3), [0.0])[0]
    with pytest.raises(ViewSynthesisError, match="panorama p: image must be 2:1, got 30x10"):
        render_rectified_view(spec, camera, np.zeros((10, 30, 3), np.uint8), None, pose)
    with pytest.raises(ViewSynthesisError, match="range map must be a 2:1"):
        render_rectified_view(
            spec, camera, np.zeros((10, 20, 3), np.uint8), np.zeros((10, 10), np.float32), pose
        )
    away = view_specs("p", "rectified", 0.0, [1.0, 0.0, 0.0], [0.0])[0]
    with pytest.raises(ViewSynthesisError, match="must sit at its panorama"):
        render_rectified_view(away, camera, np.zeros((10, 20, 3), np.uint8), None, pose)


def test_config_validation_and_camera_sources(tmp_path: Path) -> None:
    default = ViewSynthesisConfig()
    camera = default.camera.pinhole()
    assert (camera.width, camera.height) == (640, 480)
    assert camera.hfov_deg == pytest.approx(57.6)
    assert default.virtual_offsets_m == (-4.0, 4.0) and default.num_yaws == 12
    with pytest.raises(ConfigError, match=r"views.yaml: virtual_offsets_m: .*non-zero"):
        validate_mapping(ViewSynthesisConfig, {"virtual_offsets_m": [0.0, 4.0]}, "views.yaml")
    with pytest.raises(ConfigError, match="duplicates"):
        validate_mapping(ViewSynthesisConfig, {"virtual_offsets_m": [4.0, 4.0]}, "views.yaml")
    with pytest.raises(ConfigError, match=r"views\.yaml: max_hole_ratio"):
        validate_mapping(ViewSynthesisConfig, {"max_hole_ratio": 1.5}, "views.yaml")
    with pytest.raises(ConfigError, match=r"views\.yaml: num_yaw"):
        validate_mapping(ViewSynthesisConfig, {"num_yaw": 8}, "views.yaml")  # typo: unknown key
    calibrated = PinholeCamera(800, 600, 700.0, 702.0, 401.0, 299.0, "plumb_bob", (0.1, -0.05, 0.0, 0.0, 0.0))
    yaml_path = tmp_path / "camera.yaml"
    yaml_path.write_text(yaml.safe_dump(calibrated.to_dict()), encoding="utf-8")
    from_file = ViewCameraConfig(calibration=yaml_path).pinhole()
    assert from_file == calibrated.undistorted()
    with pytest.raises(ConfigError, match="either calibration or width"):
        validate_mapping(ViewCameraConfig, {"calibration": str(yaml_path), "width": 320}, "views.yaml")
