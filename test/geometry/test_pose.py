import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geoloc_ros.geometry import (
    Pose2D,
    Pose3D,
    quaternion_from_rotation,
    quaternion_from_yaw,
    rotation_from_quaternion,
    rotation_from_ypr,
    yaw_from_quaternion,
    ypr_from_rotation,
)


def test_ypr_is_intrinsic_zyx_rep103():
    yaw, pitch, roll = 0.3, -0.2, 0.1
    expected = (
        Rotation.from_rotvec([0, 0, yaw])
        * Rotation.from_rotvec([0, pitch, 0])
        * Rotation.from_rotvec([roll, 0, 0])
    ).as_matrix()
    assert np.allclose(rotation_from_ypr(yaw, pitch, roll), expected)
    assert np.allclose(ypr_from_rotation(expected), (yaw, pitch, roll))


def test_positive_pitch_points_x_down():
    forward = rotation_from_ypr(0.0, np.deg2rad(10), 0.0) @ np.array([1.0, 0, 0])
    assert forward[2] < 0


def test_quaternion_round_trip_and_yaw():
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = Rotation.random(random_state=rng).as_matrix()
        q = quaternion_from_rotation(r)
        assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1.0)
        assert np.allclose(rotation_from_quaternion(q), r)
        assert yaw_from_quaternion(q) == pytest.approx(ypr_from_rotation(r)[0])
    assert yaw_from_quaternion(quaternion_from_yaw(2.5)) == pytest.approx(2.5)


def test_bad_quaternion():
    with pytest.raises(ValueError, match="not a valid rotation"):
        rotation_from_quaternion([0, 0, 0, 0])


def test_pose3d_compose_inverse_transform():
    a = Pose3D.from_xyz_ypr([1, 2, 3], 0.5, 0.1, -0.2)
    b = Pose3D.from_xyz_ypr([-4, 0.5, 1], -1.0, 0.0, 0.3)
    ab = a.compose(b)
    assert np.allclose(ab.as_matrix(), a.as_matrix() @ b.as_matrix())
    assert np.allclose(a.compose(a.inverse()).as_matrix(), np.eye(4))
    pts = np.random.default_rng(1).normal(size=(10, 3))
    assert np.allclose(ab.transform_points(pts), a.transform_points(b.transform_points(pts)))
    assert np.allclose(Pose3D.from_matrix(ab.as_matrix()).translation, ab.translation)
    assert np.allclose(Pose3D.from_xyz_quaternion(a.translation, a.quaternion).rotation, a.rotation)


def test_pose2d_matches_pose3d():
    a2, b2 = Pose2D(1.0, 2.0, 0.4), Pose2D(-3.0, 0.5, 2.9)
    a3 = Pose3D.from_xyz_ypr([1.0, 2.0, 0.0], 0.4)
    b3 = Pose3D.from_xyz_ypr([-3.0, 0.5, 0.0], 2.9)
    c2 = a2.compose(b2)
    c3 = a3.compose(b3).to_pose2d()
    assert np.allclose([c2.x, c2.y], [c3.x, c3.y])
    assert np.isclose(np.cos(c2.yaw - c3.yaw), 1.0)
    ident = a2.compose(a2.inverse())
    assert np.allclose(ident.as_array(), 0.0, atol=1e-12)
