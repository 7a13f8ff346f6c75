import numpy as np
import pytest

from geoloc_ros.camera import PinholeCamera
from geoloc_ros.camera.validation import BadFrameError, check_frame

CAM = PinholeCamera.from_hfov(64, 48, 60)


def test_good_frame_passes():
    check_frame(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8), CAM)
    dark_with_content = np.full((48, 64), 2, np.uint8) + np.eye(48, 64, dtype=np.uint8) * 200
    check_frame(dark_with_content)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((48, 64, 3), np.uint8), "black"),
        (np.ones((48, 64, 3), np.float32), "uint8"),
        (np.full((24, 64, 3), 100, np.uint8), "frame is 64x24 but camera_info says 64x48"),
    ],
)
def test_bad_frames_are_named(image, message):
    with pytest.raises(BadFrameError, match=message):
        check_frame(image, CAM)
