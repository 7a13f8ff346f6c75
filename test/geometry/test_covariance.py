import numpy as np
import pytest

from geoloc_ros.geometry.covariance import (
    UNKNOWN_VARIANCE,
    YAW,
    CovarianceError,
    chi2_quantile,
    error_ellipse,
    from_row_major,
    mahalanobis_squared,
    planar_to_pose_covariance,
    pose_to_planar_covariance,
    to_row_major,
    validate_covariance,
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
    assert np.allclose(pose_to_planar_covariance(from_row_major(flat)), c3)
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


def test_ellipse_and_chi2():
    assert chi2_quantile(0.95, 2) == pytest.approx(5.991, abs=1e-3)
    major, minor, angle = error_ellipse(np.diag([4.0, 1.0]))
    assert major == pytest.approx(2.0 * np.sqrt(5.991), rel=1e-3)
    assert minor == pytest.approx(np.sqrt(5.991), rel=1e-3)
    assert abs(np.sin(angle)) < 1e-9
    assert mahalanobis_squared([2.0, 0.0], np.diag([4.0, 1.0])) == pytest.approx(1.0)


def test_gaussian_sample_falls_in_95_ellipse_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.8], [0.8, 0.5]])
    samples = rng.multivariate_normal([0, 0], cov, size=20000)
    d2 = np.einsum("ij,jk,ik->i", samples, np.linalg.inv(cov), samples)
    assert np.mean(d2 <= chi2_quantile(0.95, 2)) == pytest.approx(0.95, abs=0.01)
