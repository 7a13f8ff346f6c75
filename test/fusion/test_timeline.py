"""Time sanity of the fusion filter (geoloc_ros.fusion.timeline): the bad-input campaign's cases and
property-based tests over random stamp orders, gaps, NaNs and outliers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoloc_ros.fusion import FusionConfig, GpsFix, PlanarFusionFilter
from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.geometry.estimate import PoseEstimate

NS = 1_000_000_000
DAY_NS = 86_400 * NS
ORIGIN = GeoOrigin(48.0, 2.0, 0.0)
T0 = 1_000 * NS


def truth(t_s: float) -> tuple[float, float, float]:
    """A car driving east at 10 m/s on a gentle S-curve."""
    x, y = 10.0 * t_s, 5.0 * math.sin(0.1 * t_s)
    return x, y, math.atan2(0.5 * math.cos(0.1 * t_s), 10.0)


def pose(t_s: float, std: float = 0.3, offset: tuple[float, float] = (0.0, 0.0), stamp_ns: int | None = None):
    x, y, yaw = truth(t_s)
    cov = np.diag([std**2, std**2, math.radians(1.0) ** 2])
    stamp = T0 + round(t_s * NS) if stamp_ns is None else stamp_ns
    return PoseEstimate.planar(stamp, x + offset[0], y + offset[1], yaw, cov, source="bovw")


def gps(t_s: float, stamp_ns: int | None = None) -> GpsFix:
    x, y, _ = truth(t_s)
    lat, lon, alt = enu_to_geodetic(np.array([x, y, 0.0]), ORIGIN)
    stamp = T0 + round(t_s * NS) if stamp_ns is None else stamp_ns
    return GpsFix(stamp, float(lat), float(lon), float(alt), np.diag([9.0, 9.0, 25.0]).reshape(-1), 2)


def position_error(fusion: PlanarFusionFilter, t_s: float) -> float:
    estimate = fusion.estimate_at(T0 + round(t_s * NS))
    assert estimate is not None
    x, y, _ = truth(t_s)
    return float(math.hypot(estimate.position[0] - x, estimate.position[1] - y))


def test_a_gps_fix_stamped_one_day_ahead_never_stops_fused_output():
    fusion = PlanarFusionFilter(origin=ORIGIN)
    for k in range(40):  # 2 s of BoVW at 20 Hz, GPS at 1 Hz
        fusion.add(pose(0.05 * k))
        if k % 20 == 0:
            fusion.add(gps(0.05 * k))
    bad = fusion.add(gps(2.0, stamp_ns=T0 + 2 * NS + DAY_NS))
    assert (bad.status, bad.reason, bad.reset) == ("rejected", "future", None)
    assert fusion.diagnostics.newest_stamp_ns < T0 + 3 * NS  # never the newest time
    for k in range(40, 100):
        result = fusion.add(pose(0.05 * k))
        assert result.status == "accepted", result
        assert fusion.diagnostics.newest_stamp_ns == T0 + round(0.05 * k * NS)
    assert fusion.add(gps(5.0)).status == "accepted"  # GPS recovers with its next sane stamp
    assert fusion.diagnostics.resets == 0 and position_error(fusion, 4.95) < 1.0


def test_a_stale_pose_with_a_bogus_position_neither_resets_nor_poisons_fusion():
    fusion = PlanarFusionFilter()
    for k in range(200):  # 10 s at 20 Hz
        fusion.add(pose(0.05 * k))
    # 10 s old, ~1400 km away, with a confident covariance.
    bad = fusion.add(pose(0.0, std=0.1, offset=(1.0e6, 1.0e6), stamp_ns=T0 + round(9.95 * NS) - 10 * NS))
    assert (bad.status, bad.reason, bad.reset) == ("rejected", "too_old", None)
    assert fusion.diagnostics.resets == 0
    assert position_error(fusion, 9.95) < 1.0
    good = fusion.add(pose(10.0))
    assert good.status == "accepted" and position_error(fusion, 10.0) < 1.0


def test_first_measurement_a_day_ahead_is_outvoted_by_the_next_ones():
    """Offline, no clock tells which timeline is right: consecutive agreeing stamps do."""
    fusion = PlanarFusionFilter(origin=ORIGIN)
    fusion.add(gps(0.0, stamp_ns=T0 + DAY_NS))
    results = [fusion.add(pose(0.05 * k)) for k in range(5)]
    confirmations = FusionConfig().time_jump_confirmations
    assert all(r.status == "rejected" for r in results[: confirmations - 1])
    assert results[confirmations - 1].reset == "time_backwards"
    assert results[confirmations - 1].status == "initialized"
    assert all(r.status == "accepted" for r in results[confirmations:])


def test_the_node_clock_rejects_future_and_stale_stamps_and_confirms_a_loop_at_once():
    now = [T0]
    fusion = PlanarFusionFilter(origin=ORIGIN, clock=lambda: now[0])
    for k in range(20):
        now[0] = T0 + round(0.05 * k * NS)
        fusion.add(pose(0.05 * k))
    ahead = fusion.add(gps(1.0, stamp_ns=now[0] + 5 * NS))
    assert (ahead.status, ahead.reason) == ("rejected", "future")
    stale = fusion.add(pose(0.0, stamp_ns=now[0] - 60 * NS))
    assert (stale.status, stale.reason) == ("rejected", "too_old")
    # The bag loops under use_sim_time: the clock goes back with the data; one pose confirms it.
    now[0] = T0 - 100 * NS
    looped = fusion.add(pose(-100.0))
    assert looped.reset == "time_backwards" and looped.status == "initialized"
    # Unknown clock (sim time before /clock): the node-clock checks are skipped.
    now[0] = 0
    assert fusion.add(pose(-99.95)).status == "accepted"


# ------------------------------------------------------------------------------------------ properties
# NaN covariances cannot even be built as a PoseEstimate (the node counts such messages itself).
GOOD, NAN, OUTLIER, FUTURE, PAST = "good", "nan", "outlier", "future", "past"


def _bad(kind: str, t_s: float) -> PoseEstimate:
    if kind == NAN:
        return PoseEstimate.planar(T0 + round(t_s * NS), math.nan, 0.0, 0.0, np.eye(3), source="bovw")
    if kind == OUTLIER:
        return pose(t_s, std=0.1, offset=(800.0, -3000.0))
    if kind == FUTURE:
        return pose(t_s, stamp_ns=T0 + round(t_s * NS) + DAY_NS)
    return pose(t_s, offset=(1.0e6, 0.0), stamp_ns=T0 + round(t_s * NS) - 10 * NS)  # PAST, bogus


WARM_UP = 20


@st.composite
def streams(draw):
    """Good poses of the drive (locally shuffled, with gaps) with bursts of at most two bad ones,
    after one second of good poses that initialize the filter and let it converge."""
    n = draw(st.integers(10, 60))
    items = [(GOOD, 0.05 * k) for k in range(WARM_UP)]
    t = items[-1][1]
    for _ in range(n):
        t += draw(st.sampled_from([0.05, 0.05, 0.1, 0.5, 3.0, 12.0]))  # gaps up to 12 s
        items.append((GOOD, t))
        if draw(st.integers(0, 3)) == 0:
            for _ in range(draw(st.integers(1, 2))):
                items.append((draw(st.sampled_from([NAN, OUTLIER, FUTURE, PAST])), t))
    # Local reordering: swap neighbouring good poses less than the history apart.
    for i in range(len(items) - 1):
        (ka, ta), (kb, tb) = items[i], items[i + 1]
        if ka == kb == GOOD and tb - ta < 0.5 and draw(st.booleans()):
            items[i], items[i + 1] = items[i + 1], items[i]
    seed = draw(st.integers(0, 2**16))
    return items, seed


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_output_is_finite_bounded_and_calibrated_whatever_the_input(stream):
    items, seed = stream
    rng = np.random.default_rng(seed)
    fusion = PlanarFusionFilter()
    newest_good = None
    for kind, t_s in items:
        if kind == GOOD:
            noise = tuple(rng.normal(0.0, 0.3, 2))
            result = fusion.add(pose(t_s, offset=noise))
            stamp = T0 + round(t_s * NS)
            newest_good = stamp if newest_good is None else max(newest_good, stamp)
            # Output resumes with the first good measurement after any bad one.
            assert fusion.diagnostics.newest_stamp_ns == newest_good
        else:
            result = fusion.add(_bad(kind, t_s))
            assert result.status == "rejected" and result.reset is None, (kind, result)
        assert fusion.diagnostics.resets == 0
        estimate = fusion.estimate_at(newest_good)
        assert estimate is not None
        assert np.isfinite(estimate.position).all() and np.isfinite(estimate.covariance).all()
        x, y, _ = truth((newest_good - T0) / NS)
        assert math.hypot(estimate.position[0] - x, estimate.position[1] - y) < 50.0  # bounded
    # Calibrated: the final error is within 5 sigma of the published covariance.
    final = fusion.estimate_at(newest_good)
    x, y, _ = truth((newest_good - T0) / NS)
    cov = final.planar_covariance
    error = np.array([final.position[0] - x, final.position[1] - y])
    assert float(error @ np.linalg.solve(cov[:2, :2], error)) < 5.0**2


@pytest.mark.parametrize("kind", [NAN, OUTLIER, FUTURE, PAST])
def test_every_bad_kind_is_counted_by_reason(kind):
    fusion = PlanarFusionFilter()
    for k in range(20):
        fusion.add(pose(0.05 * k))
    result = fusion.add(_bad(kind, 1.0))
    assert result.status == "rejected"
    assert fusion.diagnostics.sources["bovw"].rejected[result.reason] == 1


def test_the_node_clock_confirms_a_forward_jump_after_a_long_outage_at_once():
    now = [T0]
    fusion = PlanarFusionFilter(clock=lambda: now[0])
    for k in range(20):
        now[0] = T0 + round(0.05 * k * NS)
        fusion.add(pose(0.05 * k))
    now[0] = T0 + 60 * NS  # a minute without any measurement (a tunnel)
    result = fusion.add(pose(60.0))
    assert result.reset == "time_forward" and result.status == "initialized"
    # Without a clock the same stamp is only a candidate.
    offline = PlanarFusionFilter()
    for k in range(20):
        offline.add(pose(0.05 * k))
    assert offline.add(pose(60.0)).reason == "future"
