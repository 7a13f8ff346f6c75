import numpy as np
import pytest

from geoloc_ros.camera import CameraModelError, PinholeCamera
from geoloc_ros.camera.rectify import Rectifier, processing_camera_for

DISTORTED = PinholeCamera(640, 480, 560.0, 560.0, 322.0, 238.0, "plumb_bob", (-0.25, 0.08, 0.0, 0.0, 0.0))


def test_processing_camera_defaults_and_resize():
    assert processing_camera_for(DISTORTED) == DISTORTED.undistorted()
    half = processing_camera_for(DISTORTED, width=320)
    assert (half.width, half.height) == (320, 240) and not half.is_distorted
    paper_like = processing_camera_for(DISTORTED, hfov_deg=57.6)
    assert paper_like.hfov_deg == pytest.approx(57.6)


def test_rectified_image_puts_points_where_the_ideal_camera_sees_them():
    target = processing_camera_for(DISTORTED, width=320)
    rectifier = Rectifier(DISTORTED, target)
    points = np.array([[0.8, -0.4, 5.0], [-1.5, 0.9, 6.0], [0.0, 0.0, 4.0]])
    raw = np.zeros((480, 640), np.uint8)
    for u, v in DISTORTED.project(points)[0]:
        raw[round(v) - 2 : round(v) + 3, round(u) - 2 : round(u) + 3] = 255
    out = rectifier(raw)
    assert out.shape == (240, 320)
    for u, v in target.project(points)[0]:
        iu, iv = round(u), round(v)
        assert out[iv, iu] > 100, (u, v)


def test_identity_and_size_mismatch():
    cam = PinholeCamera.from_hfov(64, 48, 60)
    image = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64).astype(np.uint8)
    assert Rectifier(cam, cam)(image) is image
    with pytest.raises(CameraModelError, match=r"image is 32x48 but its camera model is 64x48"):
        Rectifier(cam, cam)(image[:, :32])
    with pytest.raises(CameraModelError, match="distortion-free"):
        Rectifier(cam, DISTORTED)
