import numpy as np
import pytest

from geoloc_ros.config import dump_yaml
from geoloc_ros.errors import ConfigError
from geoloc_ros.geometry import CameraMounting, Pose3D, body_pose_from_optical, optical_pose_from_body


def test_optical_axes_of_a_forward_camera():
    t_base_opt = CameraMounting(translation=(1.5, 0.0, -0.5)).base_to_optical()
    # optical z (forward) = base x, optical x (right) = -base y, optical y (down) = -base z
    assert np.allclose(t_base_opt.rotation[:, 2], [1, 0, 0])
    assert np.allclose(t_base_opt.rotation[:, 0], [0, -1, 0])
    assert np.allclose(t_base_opt.rotation[:, 1], [0, 0, -1])
    assert np.allclose(t_base_opt.translation, [1.5, 0, -0.5])


def test_mounting_yaw_and_pitch():
    left = CameraMounting(yaw_deg=90).base_to_optical()
    assert np.allclose(left.rotation[:, 2], [0, 1, 0], atol=1e-12)
    down = CameraMounting(pitch_deg=10).base_to_optical()
    assert down.rotation[2, 2] < 0  # looks down


def test_body_optical_round_trip():
    body = Pose3D.from_xyz_ypr([1, 2, 3], 0.3, 0.1, 0.05)
    assert np.allclose(body_pose_from_optical(optical_pose_from_body(body)).as_matrix(), body.as_matrix())


def test_mounting_yaml_round_trip_and_errors(tmp_path):
    path = tmp_path / "camera_mounting.yaml"
    path.write_text(dump_yaml(CameraMounting(translation=(1.0, 0.2, -0.3), pitch_deg=3.0)))
    assert CameraMounting.load(path).pitch_deg == 3.0
    path.write_text("translation: [1, 2, 3]\npitch_deg: 120\n")
    with pytest.raises(
        ConfigError, match=r"camera_mounting.yaml: pitch_deg: Input should be less than or equal to 90"
    ):
        CameraMounting.load(path)
    path.write_text("translaton: [1, 2, 3]\n")
    with pytest.raises(ConfigError, match="translaton: Extra inputs are not permitted"):
        CameraMounting.load(path)
    with pytest.raises(ConfigError, match="not found"):
        CameraMounting.load(tmp_path / "missing.yaml")
