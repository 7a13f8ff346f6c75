from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from geoloc_ros.camera import CameraModelError, PinholeCamera


def camera_info(**overrides):
    fields = dict(
        width=640,
        height=480,
        k=[580.0, 0.0, 320.5, 0.0, 585.0, 241.0, 0.0, 0.0, 1.0],
        d=[-0.28, 0.07, 0.001, -0.0005, 0.0],
        distortion_model="plumb_bob",
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_from_camera_info_reads_k_and_d():
    cam = PinholeCamera.from_camera_info(camera_info())
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (580.0, 585.0, 320.5, 241.0)
    assert cam.distortion == (-0.28, 0.07, 0.001, -0.0005, 0.0)
    assert cam.is_distorted
    fields = cam.camera_info_fields()
    assert np.allclose(fields["k"], camera_info().k) and np.allclose(fields["d"], camera_info().d)


def test_from_hfov_paper_camera():
    cam = PinholeCamera.from_hfov(640, 480, 57.6)
    assert cam.hfov_deg == pytest.approx(57.6)
    assert cam.fx == pytest.approx(320 / np.tan(np.deg2rad(28.8)))
    assert (cam.cx, cam.cy) == (319.5, 239.5)


def test_project_backproject_round_trip_with_distortion():
    cam = PinholeCamera.from_camera_info(camera_info())
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-3, 3, 100), rng.uniform(-2, 2, 100), rng.uniform(4, 30, 100)])
    uv, front = cam.project(pts)
    assert front.all()
    back = cam.backproject(uv, pts[:, 2])
    assert np.abs(back - pts).max() < 1e-4
    # Independent check of the distorted projection against OpenCV directly.
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam.K, cam.D)
    assert np.allclose(uv, ref.reshape(-1, 2))


def test_points_behind_are_flagged():
    cam = PinholeCamera.from_hfov(640, 480, 60)
    uv, front = cam.project([[0, 0, -1], [0, 0, 2]])
    assert list(front) == [False, True] and np.isnan(uv[0]).all() and np.allclose(uv[1], [cam.cx, cam.cy])


def test_rectify_maps_undistort_a_projected_point():
    cam = PinholeCamera.from_camera_info(camera_info())
    target = PinholeCamera.from_hfov(320, 240, 50.0)
    map1, map2 = cam.rectify_maps(target)
    assert map1.shape == (240, 320)
    # A point the undistorted target camera sees at (u, v) maps to where the distorted camera sees it.
    p = np.array([[0.4, -0.2, 5.0]])
    (u_t, v_t), _ = target.project(p)[0][0], None
    (u_d, v_d) = cam.project(p)[0][0]
    iu, iv = round(u_t), round(v_t)
    assert abs(map1[iv, iu] - u_d) < 1.5 and abs(map2[iv, iu] - v_d) < 1.5
    with pytest.raises(CameraModelError, match="distortion-free"):
        cam.rectify_maps(cam)


def test_scaled_keeps_rays():
    cam = PinholeCamera.from_hfov(640, 480, 57.6)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    # The same world ray hits corresponding pixel positions (pixel-centre convention).
    p = np.array([[1.0, 0.5, 10.0]])
    uv_full = cam.project(p)[0][0]
    uv_half = half.project(p)[0][0]
    assert np.allclose((uv_full + 0.5) * 0.5 - 0.5, uv_half)


def test_yaml_round_trip(tmp_path):
    cam = PinholeCamera.from_camera_info(camera_info())
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(cam.to_dict("front")))
    assert PinholeCamera.load(path) == cam


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (camera_info(k=[0.0] * 9), "uncalibrated"),
        (camera_info(k=[1.0] * 4), "9 elements"),
        (camera_info(distortion_model="fisheye"), "unsupported distortion model 'fisheye'"),
        (camera_info(d=[0.1, 0.2]), "needs 5 coefficients"),
        (camera_info(width=0), "size must be positive"),
    ],
)
def test_bad_camera_info(info, message):
    with pytest.raises(CameraModelError, match=message):
        PinholeCamera.from_camera_info(info)


def test_bad_yaml(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text("image_width: 640\n")
    with pytest.raises(CameraModelError, match="missing field 'camera_matrix'"):
        PinholeCamera.load(path)
    with pytest.raises(CameraModelError, match="horizontal field of view"):
        PinholeCamera.from_hfov(640, 480, 190)


@pytest.mark.parametrize("size", [(100000, 1), (1, 100000000), (16385, 16), (10000, 10000)])
def test_camera_info_beyond_the_size_limits_is_refused(size):
    width, height = size
    info = SimpleNamespace(
        width=width, height=height, k=[500.0, 0, 1.0, 0, 500.0, 1.0, 0, 0, 1], d=[], distortion_model=""
    )
    with pytest.raises(CameraModelError, match="exceeds the limit"):
        PinholeCamera.from_camera_info(info)
