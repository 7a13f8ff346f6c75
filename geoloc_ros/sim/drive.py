"""The vehicle run: a route through the street network, a smooth lane trajectory and a speed profile.

The route is a walk along streets (at least ``min_turns`` turns at intersections). The lane path is
the route's centre line offset to the right (right-hand traffic) with corners rounded at the
intersections; the speed follows random cruise speeds within the scenario's range, slowed so the
lateral acceleration in turns stays under the limit, with bounded (de)acceleration. ``base_link``
(the RTK antenna) rides at ``antenna_height_m``; pitch and roll follow the suspension (small
oscillations, dive under braking, roll in turns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.sim.errors import SimError
from geoloc_ros.sim.scenario import Scenario
from geoloc_ros.sim.town import StreetNetwork

PATH_STEP_M = 0.1
GRAVITY = 9.80665


@dataclass(frozen=True)
class RouteLeg:
    street: int
    forward: bool  # True: from node_a to node_b


def _leg_points(network: StreetNetwork, leg: RouteLeg) -> np.ndarray:
    pts = network.streets[leg.street].points
    return pts if leg.forward else pts[::-1]


def _leg_end_node(network: StreetNetwork, leg: RouteLeg) -> int:
    st = network.streets[leg.street]
    return st.node_b if leg.forward else st.node_a


def _direction_change(network: StreetNetwork, a: RouteLeg, b: RouteLeg) -> float:
    pa, pb = _leg_points(network, a), _leg_points(network, b)
    da = pa[-1] - pa[-2]
    db = pb[1] - pb[0]
    return abs(float(wrap_angle(math.atan2(db[1], db[0]) - math.atan2(da[1], da[0]))))


def plan_route(
    network: StreetNetwork, length_m: float, min_turns: int, rng: np.random.Generator, attempts: int = 400
) -> list[RouteLeg]:
    """A walk of at least ``length_m`` metres with ``min_turns`` turns (> 45°), using no street twice."""
    n_nodes = len(network.nodes)
    for _ in range(attempts):
        node = int(rng.integers(n_nodes))
        legs: list[RouteLeg] = []
        used: set[int] = set()
        total = 0.0
        turns = 0
        while total < length_m:
            options = []
            for sid in network.node_streets[node]:
                if sid in used:
                    continue
                st = network.streets[sid]
                leg = RouteLeg(sid, st.node_a == node)
                options.append(leg)
            if not options:
                break
            if legs:
                # Prefer turning until enough turns were made, then any direction.
                changes = np.array([_direction_change(network, legs[-1], o) for o in options])
                want_turn = turns < min_turns
                weights = np.where(
                    changes > math.radians(45), 3.0 if want_turn else 1.0, 1.0 if want_turn else 2.0
                )
                choice = options[int(rng.choice(len(options), p=weights / weights.sum()))]
                if _direction_change(network, legs[-1], choice) > math.radians(45):
                    turns += 1
            else:
                choice = options[int(rng.integers(len(options)))]
            legs.append(choice)
            used.add(choice.street)
            total += network.streets[choice.street].length
            node = _leg_end_node(network, choice)
        if total >= length_m and turns >= min_turns:
            return legs
    raise SimError(
        f"drive.route_length_m: no route of {length_m:.0f} m with {min_turns} turn(s) exists in this town "
        "(make the town larger or the route shorter)"
    )


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    points = points[keep]
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    s = np.arange(0.0, cum[-1], step)
    s = np.append(s, cum[-1])
    return np.column_stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])])


def _offset_right(points: np.ndarray, offset: float) -> np.ndarray:
    tangent = np.gradient(points, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    right = np.column_stack([tangent[:, 1], -tangent[:, 0]])
    return points + right * offset


def _hermite(a: np.ndarray, da: np.ndarray, b: np.ndarray, db: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    h00 = 2 * t**3 - 3 * t**2 + 1
    h10 = t**3 - 2 * t**2 + t
    h01 = -2 * t**3 + 3 * t**2
    h11 = t**3 - t**2
    return h00 * a + h10 * da + h01 * b + h11 * db


def lane_path(
    network: StreetNetwork, legs: list[RouteLeg], lane_offset: float, turn_radius: float
) -> np.ndarray:
    """The lane centre line (``(N, 2)``, 0.1 m steps) of a route, corners rounded at intersections."""
    pieces = [_offset_right(_resample(_leg_points(network, leg), 0.5), lane_offset) for leg in legs]
    path = pieces[0]
    for i, nxt in enumerate(pieces[1:]):
        d1 = path[-1] - path[-2]
        d1 /= np.linalg.norm(d1)
        d2 = nxt[1] - nxt[0]
        d2 /= np.linalg.norm(d2)
        angle = math.acos(float(np.clip(d1 @ d2, -1.0, 1.0)))
        radius = turn_radius
        if d1[0] * d2[1] - d1[1] * d2[0] < 0:
            # Right turn: the arc bulges towards the (square) kerb corner by R (sqrt 2 - 1) at 90°;
            # keep it 0.6 m inside the road.
            half = min(
                network.streets[legs[i].street].half_width, network.streets[legs[i + 1].street].half_width
            )
            radius = min(
                turn_radius, max(3.0, (half - lane_offset - 0.6) * math.sqrt(2) / (math.sqrt(2) - 1))
            )
        cut = min(radius * math.tan(angle / 2.0) + 1.0, 15.0) if angle > math.radians(3) else 1.0
        # Trim both pieces around the junction and bridge them with a Hermite curve.
        cum_back = np.cumsum(np.linalg.norm(np.diff(path[::-1], axis=0), axis=1))
        k_back = int(np.searchsorted(cum_back, cut)) + 1
        cum_fwd = np.cumsum(np.linalg.norm(np.diff(nxt, axis=0), axis=1))
        k_fwd = int(np.searchsorted(cum_fwd, cut)) + 1
        if k_back >= len(path) - 2 or k_fwd >= len(nxt) - 2:
            raise SimError("drive.turn_radius_m: a street on the route is too short for the turn radius")
        head = path[: len(path) - k_back]
        tail = nxt[k_fwd:]
        a, b = head[-1], tail[0]
        ta = head[-1] - head[-2]
        tb = tail[1] - tail[0]
        span = float(np.linalg.norm(b - a))
        ta = ta / np.linalg.norm(ta) * span
        tb = tb / np.linalg.norm(tb) * span
        bridge = _hermite(a, ta, b, tb, max(8, int(span / 0.25)))
        path = np.concatenate([head, bridge[1:-1], tail])
    return _resample(path, PATH_STEP_M)


@dataclass
class Trajectory:
    """``base_link`` motion sampled on a fine time grid; query with :meth:`poses_at`."""

    t: np.ndarray  # seconds from the first frame
    xy: np.ndarray
    yaw: np.ndarray  # unwrapped
    pitch: np.ndarray
    roll: np.ndarray
    z: np.ndarray
    speed: np.ndarray
    path_xy: np.ndarray  # the lane path (for clearance checks)

    @property
    def duration(self) -> float:
        return float(self.t[-1])

    def states_at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(N, 3)`` and yaw/pitch/roll ``(N, 3)`` (yaw wrapped) at ``times`` (seconds)."""
        tt = np.asarray(times, dtype=float)
        if np.any(tt < -1e-9) or np.any(tt > self.duration + 1e-9):
            raise SimError(f"trajectory queried outside [0, {self.duration:.3f}] s")
        pos = np.column_stack(
            [
                np.interp(tt, self.t, self.xy[:, 0]),
                np.interp(tt, self.t, self.xy[:, 1]),
                np.interp(tt, self.t, self.z),
            ]
        )
        ypr = np.column_stack(
            [
                wrap_angle(np.interp(tt, self.t, self.yaw)),
                np.interp(tt, self.t, self.pitch),
                np.interp(tt, self.t, self.roll),
            ]
        )
        return pos, ypr

    def poses_at(self, times: np.ndarray) -> list[Pose3D]:
        """``T_map_base`` at each time."""
        pos, ypr = self.states_at(times)
        return [Pose3D.from_xyz_ypr(p, *a) for p, a in zip(pos, ypr, strict=True)]

    def body_rates_at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Angular velocity and specific force (gravity included) in ``base_link`` at ``times``."""
        tt = np.asarray(times, dtype=float)
        dt = 0.05  # central differences over the 200 Hz linearly interpolated samples
        t0 = np.clip(tt - dt, 0.0, self.duration)
        t1 = np.clip(tt + dt, 0.0, self.duration)
        span = np.maximum(t1 - t0, 1e-9)
        rates, forces = [], []
        p0, a0 = self.states_at(t0)
        p1, a1 = self.states_at(t1)
        pm, am = self.states_at(tt)
        v0 = (pm - p0) / np.maximum(tt - t0, 1e-9)[:, None]
        v1 = (p1 - pm) / np.maximum(t1 - tt, 1e-9)[:, None]
        acc_world = (v1 - v0) / (0.5 * span)[:, None]
        for k in range(len(tt)):
            r0 = Pose3D.from_xyz_ypr(p0[k], *a0[k]).rotation
            r1 = Pose3D.from_xyz_ypr(p1[k], *a1[k]).rotation
            rm = Pose3D.from_xyz_ypr(pm[k], *am[k]).rotation
            skew = (r0.T @ r1 - np.eye(3)) / span[k]  # R0^T R1 ~ I + [w]x dt in the body frame
            rates.append([skew[2, 1] - skew[1, 2], skew[0, 2] - skew[2, 0], skew[1, 0] - skew[0, 1]])
            forces.append(rm.T @ (acc_world[k] + np.array([0.0, 0.0, GRAVITY])))
        return 0.5 * np.asarray(rates), np.asarray(forces)


def build_trajectory(
    scenario: Scenario, network: StreetNetwork, legs: list[RouteLeg], rng: np.random.Generator
) -> Trajectory:
    cfg = scenario.drive
    path = lane_path(network, legs, cfg.lane_offset_m, cfg.turn_radius_m)
    # Trim a little at both ends so the vehicle starts and ends inside the streets.
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    usable = cum[-1] - 10.0
    target = min(cfg.route_length_m, usable)
    if target < 10.0:
        raise SimError(f"drive.route_length_m: route is only {cum[-1]:.0f} m long")
    start = 5.0
    sel = (cum >= start) & (cum <= start + target)
    path = path[sel]
    s = cum[sel] - cum[sel][0]
    heading = np.unwrap(np.arctan2(np.gradient(path[:, 1]), np.gradient(path[:, 0])))
    heading = gaussian_filter1d(heading, sigma=5.0, mode="nearest")
    curvature = gaussian_filter1d(np.gradient(heading, s), sigma=3.0, mode="nearest")
    # Speed limits use the sharpest curvature within +-2 m (the speed also changes with inertia).
    sharpest = maximum_filter1d(np.abs(curvature), size=41, mode="nearest")
    # Cruise speed: a new target every 80-200 m, blended smoothly.
    lo, hi = (v / 3.6 for v in cfg.speed_kmh)
    knots_s = [0.0]
    while knots_s[-1] < s[-1]:
        knots_s.append(knots_s[-1] + float(rng.uniform(80.0, 200.0)))
    knots_v = rng.uniform(lo, hi, len(knots_s))
    cruise = np.interp(s, knots_s, knots_v)
    limit = np.sqrt(cfg.max_lateral_accel_mps2 / np.maximum(sharpest, 1e-6))
    v = np.minimum(cruise, limit)
    v = np.maximum(v, 1.0)
    ds = np.diff(s)
    accel, decel = 1.2, 2.0
    for i in range(1, len(v)):  # acceleration limit
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * accel * ds[i - 1]))
    for i in range(len(v) - 2, -1, -1):  # braking limit
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * decel * ds[i]))
    dt = ds / (0.5 * (v[1:] + v[:-1]))
    t = np.concatenate([[0.0], np.cumsum(dt)])
    # Resample on a uniform 200 Hz time grid.
    tg = np.arange(0.0, t[-1], 0.005)
    sg = np.interp(tg, t, s)
    xy = np.column_stack([np.interp(sg, s, path[:, 0]), np.interp(sg, s, path[:, 1])])
    yaw = np.interp(sg, s, heading)
    vg = np.interp(sg, s, v)
    kg = np.interp(sg, s, curvature)
    a_long = gaussian_filter1d(np.gradient(vg, tg), sigma=20.0, mode="nearest")
    a_lat = vg**2 * kg
    phases = rng.uniform(0, 2 * np.pi, 4)
    freqs = rng.uniform(0.6, 1.8, 2)
    pitch_amp = math.radians(cfg.suspension_pitch_deg)
    roll_amp = math.radians(cfg.suspension_roll_deg)
    pitch = (
        pitch_amp
        * 0.5
        * (
            np.sin(2 * np.pi * freqs[0] * tg + phases[0])
            + 0.5 * np.sin(2 * np.pi * 2.7 * freqs[0] * tg + phases[1])
        )
    )
    pitch -= math.radians(0.4) * a_long  # braking (a < 0) dips the nose: positive pitch looks down
    roll = roll_amp * 0.5 * np.sin(2 * np.pi * freqs[1] * tg + phases[2]) - math.radians(0.5) * a_lat
    z = cfg.antenna_height_m + 0.01 * np.sin(2 * np.pi * 1.3 * tg + phases[3])
    return Trajectory(tg, xy, yaw, pitch, roll, z, vg, path)
