"""map -> odom at the estimate's stamp: a vehicle turning during the localizer's 100 ms latency."""

import numpy as np

from geoloc_ros.fusion.odometry_history import OdometryHistory, map_to_odom
from geoloc_ros.geometry.pose import Pose3D

SPEED = 10.0  # m/s
YAW_RATE = 0.5  # rad/s: a 20 m radius turn
LATENCY_NS = 100_000_000
ODOM_PERIOD_NS = 20_000_000  # 50 Hz
# odom drifted away from map: the transform the localizer has to recover.
T_MAP_ODOM = Pose3D.from_xyz_ypr([35.0, -12.0, 0.0], 0.3)


def t_odom_base(t_ns: int) -> Pose3D:
    """The vehicle on a circular arc in ``odom`` (constant speed and yaw rate), from the origin."""
    t = t_ns * 1e-9
    yaw = YAW_RATE * t
    radius = SPEED / YAW_RATE
    return Pose3D.from_xyz_ypr([radius * np.sin(yaw), radius * (1.0 - np.cos(yaw)), 0.0], yaw)


def position_error(t_map_odom: Pose3D, now_ns: int) -> float:
    """How far ``map -> odom -> base_link`` puts the vehicle now from where it is in ``map``."""
    believed = t_map_odom.compose(t_odom_base(now_ns))
    truth = T_MAP_ODOM.compose(t_odom_base(now_ns))
    return float(np.linalg.norm(believed.translation - truth.translation))


def test_map_to_odom_with_the_odometry_at_the_estimate_stamp_removes_the_latency_jump():
    history = OdometryHistory(max_age_s=2.0)
    image_ns = 3_010_000_000  # between two odometry stamps
    now_ns = image_ns + LATENCY_NS  # when the localizer's pose reaches fusion
    for stamp in range(0, now_ns + 1, ODOM_PERIOD_NS):
        history.add(stamp, t_odom_base(stamp))
    t_map_base = T_MAP_ODOM.compose(t_odom_base(image_ns))  # a perfect localizer pose, 100 ms old

    latest = map_to_odom(t_map_base, t_odom_base(now_ns))  # the old way: the newest odometry
    at_stamp = map_to_odom(t_map_base, history.at(image_ns))
    before, after = position_error(latest, now_ns), position_error(at_stamp, now_ns)
    assert before > 0.8 * SPEED * LATENCY_NS * 1e-9  # ~1 m: the distance driven during the latency
    assert after <= 0.05
    yaw_error = abs(at_stamp.compose(t_odom_base(now_ns)).yaw - T_MAP_ODOM.compose(t_odom_base(now_ns)).yaw)
    assert yaw_error < np.radians(0.1)


def test_history_is_bounded_never_extrapolates_and_restarts_on_a_bag_loop():
    history = OdometryHistory(max_age_s=0.5)
    for stamp in range(0, 2_000_000_001, ODOM_PERIOD_NS):
        history.add(stamp, t_odom_base(stamp))
    assert len(history) <= 0.5e9 / ODOM_PERIOD_NS + 1
    assert history.at(1_000_000_000) is None  # older than the history
    assert history.at(2_000_000_001) is None  # newer than the newest odometry: not extrapolated
    exact = history.at(2_000_000_000)
    assert exact is not None and np.allclose(exact.as_matrix(), t_odom_base(2_000_000_000).as_matrix())
    history.add(100, t_odom_base(100))  # stamps going backwards: a new drive
    assert len(history) == 1 and history.at(2_000_000_000) is None


def test_a_reordered_message_is_inserted_in_order_and_keeps_the_history():
    history = OdometryHistory(max_age_s=0.5)
    stamps = list(range(0, 1_000_000_001, ODOM_PERIOD_NS))
    late = stamps.pop(-3)  # arrives after the newest one, as a reordering transport delivers it
    for stamp in [*stamps, late]:
        history.add(stamp, t_odom_base(stamp))
    assert history.newest_stamp_ns == 1_000_000_000
    assert len(history) == 0.5e9 / ODOM_PERIOD_NS + 1  # nothing was cleared
    exact = history.at(late)
    assert exact is not None and np.allclose(exact.as_matrix(), t_odom_base(late).as_matrix())
    between = late - ODOM_PERIOD_NS // 2  # interpolates across the late message's neighbours
    got = history.at(between)
    assert got is not None and np.linalg.norm(got.translation - t_odom_base(between).translation) < 0.01
    history.add(late, t_odom_base(late + 1))  # the same stamp again replaces it
    assert len(history) == 0.5e9 / ODOM_PERIOD_NS + 1
