from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.evaluation import EvaluationError, GroundTruth, GroundTruthSample, GroundTruthStatus
from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic, geodetic_to_enu
from geoloc_ros.geometry.pose import quaternion_from_yaw

NS = 1_000_000_000
ORIGIN = GeoOrigin(48.8738, 2.2950, 35.0)


def test_samples_are_converted_to_enu_at_the_origin() -> None:
    enu = np.array([[0.0, 0.0, 0.0], [10.0, 5.0, 0.5], [20.0, 10.0, 1.0]])
    lat, lon, alt = enu_to_geodetic(enu, ORIGIN)
    samples = [GroundTruthSample(k * NS, float(lat[k]), float(lon[k]), float(alt[k])) for k in range(3)]
    gt = GroundTruth.from_samples(samples, ORIGIN)
    assert np.allclose(gt.positions, enu, atol=1e-6)
    assert np.allclose(gt.positions, geodetic_to_enu(lat, lon, alt, ORIGIN), atol=1e-9)
    assert gt.heading_source == "tangent"


def test_position_is_interpolated_linearly_and_flagged_outside() -> None:
    gt = GroundTruth.from_enu([0, NS, 2 * NS, 5 * NS], [[0, 0], [10, 0], [10, 10], [10, 40]], max_gap_s=1.5)
    at = gt.at([NS // 2, NS, NS + NS // 4, -1, 5 * NS, 5 * NS + 1, 3 * NS])
    assert np.allclose(at.positions[:3, :2], [[5, 0], [10, 0], [10, 2.5]])
    assert np.allclose(at.positions[4, :2], [10, 40])  # exactly on the last sample: valid
    assert at.status.tolist() == [
        GroundTruthStatus.VALID,
        GroundTruthStatus.VALID,
        GroundTruthStatus.VALID,
        GroundTruthStatus.BEFORE_START,
        GroundTruthStatus.VALID,
        GroundTruthStatus.AFTER_END,
        GroundTruthStatus.IN_GAP,  # 2 s -> 5 s is a 3 s gap
    ]
    flagged = ~at.valid
    assert np.all(np.isnan(at.positions[flagged])) and np.all(np.isnan(at.yaw[flagged]))


def test_heading_interpolates_along_the_shortest_arc() -> None:
    yaw = np.radians([179.0, -179.0])
    gt = GroundTruth.from_enu([0, NS], [[0, 0], [1, 0]], yaw=yaw)
    mid = gt.at([NS // 2]).yaw[0]
    assert abs(abs(mid) - math.pi) < 1e-9  # through 180 degrees, not through 0
    quarter = gt.at([NS // 4]).yaw[0]
    assert math.degrees(quarter) == pytest.approx(179.5)


def test_heading_from_a_separate_orientation_series() -> None:
    stamps = np.arange(0, 11) * NS // 10
    positions = np.stack([np.arange(11.0), np.zeros(11)], axis=1)
    orientation_stamps = np.arange(0, 21) * NS // 20
    yaws = np.linspace(0.0, 0.2, 21)
    gt = GroundTruth.from_geodetic(
        stamps,
        *enu_to_geodetic(np.concatenate([positions, np.zeros((11, 1))], axis=1), ORIGIN),
        origin=ORIGIN,
        orientation_stamps_ns=orientation_stamps,
        orientations_xyzw=[quaternion_from_yaw(y) for y in yaws],
    )
    assert gt.heading_source == "orientation"
    assert gt.at([NS // 40]).yaw[0] == pytest.approx(0.005)


def test_tangent_heading_follows_a_circle_and_is_unknown_at_standstill() -> None:
    t = np.arange(0, 200) * 0.05
    angle = 0.2 * t  # 10 m radius at 2 m/s, counter-clockwise
    positions = 10.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    stamps = np.round(t * NS).astype(np.int64)
    gt = GroundTruth.from_enu(stamps, positions)
    expected = angle + math.pi / 2
    error = np.degrees(np.abs((gt.yaw - expected + np.pi) % (2 * np.pi) - np.pi))
    assert error[5:-5].max() < 0.5

    still = GroundTruth.from_enu(stamps[:20], np.tile([3.0, 4.0], (20, 1)))
    assert np.all(np.isnan(still.at(stamps[:20]).yaw))
    assert still.at(stamps[:20]).valid.all()  # the position is still known


def test_orientation_samples_on_the_fixes() -> None:
    lat, lon, alt = enu_to_geodetic(np.array([[0, 0, 0], [0, 10, 0]], dtype=float), ORIGIN)
    samples = [
        GroundTruthSample(
            k * NS, float(lat[k]), float(lon[k]), float(alt[k]), tuple(quaternion_from_yaw(1.0))
        )
        for k in range(2)
    ]
    gt = GroundTruth.from_samples(samples, ORIGIN)
    assert gt.heading_source == "orientation"
    assert gt.at([NS // 2]).yaw[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("stamps", "positions", "message"),
    [
        ([0], [[0, 0]], "at least 2 samples"),
        ([0, 2, 1], [[0, 0]] * 3, "increase strictly: sample 2"),
        ([0, 1], [[0, 0], [np.nan, 0]], "finite"),
        ([0, 1], [[0], [1]], r"\(N, 2\) or \(N, 3\)"),
    ],
)
def test_bad_ground_truth_is_refused(stamps: list, positions: list, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        GroundTruth.from_enu(stamps, positions)


def test_bad_fix_is_refused() -> None:
    with pytest.raises(EvaluationError, match="latitude"):
        GroundTruth.from_geodetic([0, 1], [48.0, 95.0], [2.0, 2.0], [0.0, 0.0], origin=ORIGIN)


def test_tangent_heading_stays_on_its_side_of_a_gap() -> None:
    stamps = np.array([0, 1, 2, 3, 10, 20, 21, 22]) * (NS // 10)  # gaps after 0.3 s and around 1.0 s
    positions = np.stack([stamps * 1e-9 * 5.0, np.zeros(stamps.size)], axis=1)  # east at 5 m/s
    gt = GroundTruth.from_enu(stamps, positions, max_gap_s=0.5)
    assert np.allclose(gt.yaw[[0, 1, 2, 3, 5, 6, 7]], 0.0)  # one-sided at the gap edges
    assert np.isnan(gt.yaw[4])  # a lone sample between two gaps has no direction
