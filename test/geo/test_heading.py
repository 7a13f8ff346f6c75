import numpy as np
import pytest

from geoloc_ros.geo import angle_difference, compass_to_enu_yaw, enu_yaw_to_compass, wrap_angle


@pytest.mark.parametrize(
    ("compass_deg", "yaw_rad"),
    [
        (0.0, np.pi / 2),
        (90.0, 0.0),
        (180.0, -np.pi / 2),
        (270.0, -np.pi),
        (45.0, np.pi / 4),
        (360.0, np.pi / 2),
    ],
)
def test_compass_to_enu_yaw(compass_deg, yaw_rad):
    # REP-103: yaw 0 = east, counter-clockwise; compass 0 = north, clockwise.
    assert float(angle_difference(compass_to_enu_yaw(compass_deg), yaw_rad)) == pytest.approx(0.0, abs=1e-12)


def test_round_trip_and_range():
    headings = np.linspace(0, 359.9, 1000)
    back = enu_yaw_to_compass(compass_to_enu_yaw(headings))
    assert np.allclose(back, headings, atol=1e-9)
    assert np.all((back >= 0) & (back < 360))


def test_wrap_and_difference():
    assert np.allclose(wrap_angle([np.pi, -np.pi, 3 * np.pi, 0.1]), [-np.pi, -np.pi, -np.pi, 0.1])
    assert float(angle_difference(np.deg2rad(179), np.deg2rad(-179))) == pytest.approx(np.deg2rad(-2))
