"""Route and trajectory: along the streets, in the lane, at town speeds, through turns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.sim.drive import plan_route
from geoloc_ros.sim.errors import SimError
from geoloc_ros.sim.generate import Plan, plan
from geoloc_ros.sim.scenario import preset


@pytest.fixture(scope="module")
def standard_plan() -> Plan:
    return plan(preset("standard"), 1)


def test_standard_route_is_long_with_turns_and_many_frames(standard_plan: Plan) -> None:
    tr = standard_plan.trajectory
    length = np.sum(np.linalg.norm(np.diff(tr.xy, axis=0), axis=1))
    assert length >= 500.0
    assert len(standard_plan.frame_times) >= 1000
    heading_change = np.abs(np.diff(tr.yaw))
    assert np.sum(heading_change) > math.radians(80), "at least one turn"
    assert 25 <= len(standard_plan.panoramas) <= 45
    speed_kmh = tr.speed * 3.6
    assert speed_kmh.max() <= 50.0 + 1e-6 and np.median(speed_kmh) >= 28.0


def test_vehicle_drives_in_the_right_lane(standard_plan: Plan) -> None:
    net = standard_plan.network
    tr = standard_plan.trajectory
    samples = tr.xy[::200]
    near = net.nearest(samples)
    on_road = near.distance < net.half_width[near.street]
    assert on_road.all()
    # Right-hand traffic: lane_offset to the right of the travelled direction, away from corners.
    yaw = tr.yaw[::200]
    lateral_right = []
    for xy, a, s, st in zip(samples, yaw, near.s, near.street, strict=True):
        street = net.streets[st]
        if min(s, street.length - s) < 15:
            continue
        pos, _ = street.point_at(s)
        right = np.array([math.sin(a), -math.cos(a)])
        lateral_right.append(float((xy - pos) @ right))
    assert np.median(lateral_right) == pytest.approx(standard_plan.scenario.drive.lane_offset_m, abs=0.3)


def test_frames_and_poses_are_deterministic() -> None:
    a, b = plan(preset("tiny"), 7), plan(preset("tiny"), 7)
    np.testing.assert_array_equal(a.frame_stamps_ns, b.frame_stamps_ns)
    np.testing.assert_array_equal(a.trajectory.xy, b.trajectory.xy)
    assert [p.position.tolist() for p in a.panoramas] == [p.position.tolist() for p in b.panoramas]
    stamps = a.frame_stamps_ns
    assert np.all(np.diff(stamps) == 200_000_000)  # tiny: 5 Hz


def test_too_long_a_route_is_a_clear_error() -> None:
    net = plan(preset("tiny"), 1).network
    with pytest.raises(SimError, match="route_length_m"):
        plan_route(net, 10_000.0, 1, np.random.default_rng(0), attempts=20)


def test_body_rates_and_forces_are_physical(standard_plan: Plan) -> None:
    tr = standard_plan.trajectory
    times = np.linspace(1.0, tr.duration - 1.0, 50)
    rates, forces = tr.body_rates_at(times)
    assert np.all(np.abs(rates[:, 2]) < 1.0)  # yaw rate below 1 rad/s
    assert np.median(forces[:, 2]) == pytest.approx(9.81, abs=0.3)
    assert np.all(np.abs(forces[:, :2]) < 4.0)
