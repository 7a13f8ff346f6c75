import numpy as np
import pytest

from geoloc_ros.geometry.covariance import (
    UNKNOWN_VARIANCE,
    YAW,
    CovarianceError,
    chi2_quantile,
    from_row_major,
    planar_to_pose_covariance,
    to_row_major,
    validate_covariance,
    worst_horizontal_sigma,
)


def test_planar_embedding_uses_message_layout():
    c3 = np.array([[0.04, 0.01, 0.002], [0.01, 0.09, 0.0], [0.002, 0.0, 0.0003]])
    c6 = planar_to_pose_covariance(c3)
    flat = to_row_major(c6)
    assert len(flat) == 36
    # Row-major (x, y, z, rot x, rot y, rot z): var(x) at 0, cov(x, y) at 1, var(y) at 7,
    # var(yaw) at 35, cov(x, yaw) at 5.
    assert flat[0] == 0.04 and flat[1] == 0.01 and flat[7] == 0.09 and flat[35] == 0.0003 and flat[5] == 0.002
    assert flat[14] == UNKNOWN_VARIANCE and flat[21] == UNKNOWN_VARIANCE and flat[28] == UNKNOWN_VARIANCE
    assert np.allclose(from_row_major(flat)[np.ix_([0, 1, YAW], [0, 1, YAW])], c3)
    assert c6[YAW, YAW] == 0.0003


@pytest.mark.parametrize(
    ("cov", "message"),
    [
        (np.full((3, 3), np.nan), "NaN"),
        (np.array([[1, 2, 0], [0, 1, 0], [0, 0, 1]]), "not symmetric"),
        (np.diag([1, -1, 1]), "negative variance"),
        (np.array([[1, 2, 0], [2, 1, 0], [0, 0, 1]]), "not positive semi-definite"),
        (np.eye(2), "must have 9 elements"),
    ],
)
def test_invalid_covariances_are_named(cov, message):
    with pytest.raises(CovarianceError, match=message):
        validate_covariance(cov, 3, "planar covariance")


def test_chi2_quantile():
    assert chi2_quantile(0.95, 2) == pytest.approx(5.991, abs=1e-3)


def test_worst_horizontal_sigma_is_the_largest_horizontal_axis():
    rotation = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    cov6 = np.eye(6) * 100.0  # z and rotations do not count
    cov6[:2, :2] = rotation @ np.diag([4.0, 0.25]) @ rotation.T
    assert worst_horizontal_sigma(cov6) == pytest.approx(2.0)
    assert worst_horizontal_sigma(cov6[:2, :2]) == pytest.approx(2.0)
    assert worst_horizontal_sigma(np.zeros((3, 3))) == 0.0
