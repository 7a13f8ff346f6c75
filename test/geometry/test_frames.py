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


# ------------------------------------------------------------------------------------------ extrinsics
MOUNTING = CameraMounting(translation=(1.2, 0.1, -0.3), yaw_deg=3.0, pitch_deg=2.0)


def test_extrinsics_from_tf_of_an_optical_or_a_body_camera_frame():
    from geoloc_ros.geometry.frames import ExtrinsicsResolver

    truth = MOUNTING.base_to_optical()
    body = body_pose_from_optical(truth)
    transforms = {("base_link", "front_camera_optical"): truth, ("base_link", "front_camera"): body}
    asked = []

    def lookup(parent, child):
        asked.append((parent, child))
        return transforms.get((parent, child))

    resolver = ExtrinsicsResolver("tf")
    for frame in ("front_camera_optical", "front_camera"):  # REP-103 optical name, or a body frame
        pose, origin = resolver.resolve(frame, lookup)
        assert np.allclose(pose.as_matrix(), truth.as_matrix()), frame
        assert origin == f"tf base_link -> {frame}"
    resolver.resolve("front_camera", lookup)
    assert len(asked) == 2  # static: looked up once per frame
    other_base = ExtrinsicsResolver("tf", base_frame="chassis")
    with pytest.raises(ConfigError, match="chassis -> front_camera_optical"):
        other_base.resolve("front_camera_optical", lookup)


def test_extrinsics_fall_back_to_the_yaml_and_say_clearly_when_neither_is_there(tmp_path):
    from geoloc_ros.geometry.frames import ExtrinsicsResolver

    path = tmp_path / "camera_mounting.yaml"
    path.write_text(dump_yaml(MOUNTING))
    fallback = ExtrinsicsResolver("tf", path)
    pose, origin = fallback.resolve("cam_optical", lambda parent, child: None)
    assert np.allclose(pose.as_matrix(), MOUNTING.base_to_optical().as_matrix())
    assert str(path) in origin and "no tf" in origin
    pose, _ = fallback.resolve("cam_optical", None)  # tf2_ros not installed
    assert np.allclose(pose.as_matrix(), MOUNTING.base_to_optical().as_matrix())
    with pytest.raises(ConfigError, match=r"tf2_ros is not installed.*io\.camera_mounting"):
        ExtrinsicsResolver("tf").resolve("cam_optical", None)
    with pytest.raises(ConfigError, match="TF has no such transform"):
        ExtrinsicsResolver("tf").resolve("cam_optical", lambda parent, child: None)
    with pytest.raises(ConfigError, match="no frame_id"):
        ExtrinsicsResolver("tf").resolve("", lambda parent, child: None)
    # yaml: the file, or the camera at base_link when none is given (TF is not asked).
    pose, _ = ExtrinsicsResolver("yaml", path).resolve("cam_optical", lambda p, c: pytest.fail("asked TF"))
    assert np.allclose(pose.as_matrix(), MOUNTING.base_to_optical().as_matrix())
    pose, _ = ExtrinsicsResolver("yaml").resolve("cam_optical", None)
    assert np.allclose(pose.translation, 0.0)
