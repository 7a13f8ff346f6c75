from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evo.tools import file_interface

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.io.errors import TrajectoryFileError
from geoloc_ros.io.tum import (
    TumTrajectory,
    estimates_to_tum,
    format_stamp,
    parse_stamp,
    parse_tum,
    read_tum,
    write_tum,
)

GOOD_LINE = "1700000000.050000000 1.0 2.0 3.0 0.0 0.0 0.0 1.0"


def _estimates() -> list[PoseEstimate]:
    rng = np.random.default_rng(0)
    return [
        PoseEstimate.planar(
            1_700_000_000_000_000_000 + k * 50_000_001,
            *rng.normal(0, 100, 2),
            float(rng.uniform(-np.pi, np.pi)),
            np.diag([0.1, 0.1, 0.01]),
            z=float(rng.normal()),
            source="bovw",
        )
        for k in range(20)
    ]


@pytest.mark.parametrize("stamp_ns", [0, 1, 999_999_999, 1_700_000_000_050_000_001, -1_500_000_000])
def test_stamps_round_trip_exactly(stamp_ns: int) -> None:
    assert parse_stamp(format_stamp(stamp_ns)) == stamp_ns


def test_stamp_text_forms() -> None:
    assert format_stamp(1_700_000_000_050_000_000) == "1700000000.050000000"
    assert parse_stamp("1700000000.05") == 1_700_000_000_050_000_000
    assert parse_stamp("1.7e9") == 1_700_000_000_000_000_000
    for bad in ("abc", "nan", "inf"):
        with pytest.raises(ValueError, match="timestamp"):
            parse_stamp(bad)


def test_estimates_round_trip(tmp_path: Path) -> None:
    estimates = _estimates()
    path = tmp_path / "traj.tum"
    write_tum(path, estimates)
    back = read_tum(path)
    assert back.stamps_ns.tolist() == [e.stamp_ns for e in estimates]
    assert np.allclose(back.positions, [e.position for e in estimates], atol=1e-9)
    assert np.allclose(back.quaternions_xyzw, [e.pose.quaternion for e in estimates], atol=1e-9)


def test_evo_reads_our_files(tmp_path: Path) -> None:
    estimates = _estimates()
    path = tmp_path / "traj.tum"
    write_tum(path, estimates)
    evo_traj = file_interface.read_tum_trajectory_file(str(path))
    assert np.allclose(evo_traj.timestamps, [e.stamp_ns * 1e-9 for e in estimates], rtol=0, atol=1e-6)
    assert np.allclose(evo_traj.positions_xyz, [e.position for e in estimates], atol=1e-9)
    # evo stores quaternions w first.
    assert np.allclose(evo_traj.orientations_quat_wxyz[:, 0], [e.pose.quaternion[3] for e in estimates])


def test_planar_export_zeroes_z_and_keeps_yaw(tmp_path: Path) -> None:
    estimates = _estimates()
    planar = estimates_to_tum(estimates, planar=True)
    assert np.all(planar.positions[:, 2] == 0.0)
    x, y, z, w = planar.quaternions_xyzw.T
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    assert np.allclose(yaw, [e.yaw for e in estimates])


def test_comments_and_blank_lines_are_skipped() -> None:
    traj = parse_tum(f"# a comment\n\n{GOOD_LINE}\n   \n# end\n")
    assert len(traj) == 1 and traj.stamps_ns[0] == 1_700_000_000_050_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0 1 2 3 0 0 0", "line 1: expected 8 fields"),
        (f"{GOOD_LINE}\n1.0 a 2 3 0 0 0 1", ":2: pose values must be numbers"),
        ("x 1 2 3 0 0 0 1", ":1: timestamp 'x' is not a number"),
        ("1.0 nan 2 3 0 0 0 1", ":1: pose values must be finite"),
        ("1.0 1 2 3 0 0 0 2", ":1: quaternion .* is not unit length"),
        (f"{GOOD_LINE}\n{GOOD_LINE}", ":2: timestamp .* does not increase"),
    ],
)
def test_malformed_lines_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(TrajectoryFileError, match=message.replace("line 1", "bad.tum:1")):
        parse_tum(text, "bad.tum")


def test_read_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.tum"
    path.write_text("1.0 1 2 3\n")
    with pytest.raises(TrajectoryFileError, match=f"{path}:1"):
        read_tum(path)
    with pytest.raises(TrajectoryFileError, match="not found"):
        read_tum(tmp_path / "missing.tum")


def test_write_refuses_existing_and_bad_trajectories(tmp_path: Path) -> None:
    path = tmp_path / "traj.tum"
    write_tum(path, _estimates())
    with pytest.raises(OutputExistsError):
        write_tum(path, _estimates())
    write_tum(path, _estimates()[:3], overwrite=True)
    assert len(read_tum(path)) == 3
    unsorted = TumTrajectory([2, 1], np.zeros((2, 3)), [[0, 0, 0, 1]] * 2)
    with pytest.raises(TrajectoryFileError, match="increase"):
        write_tum(tmp_path / "unsorted.tum", unsorted)
    nan = TumTrajectory([1, 2], [[0, 0, 0], [np.nan, 0, 0]], [[0, 0, 0, 1]] * 2)
    with pytest.raises(TrajectoryFileError, match=r"pose 1 .* non-finite"):
        write_tum(tmp_path / "nan.tum", nan)
    assert not (tmp_path / "nan.tum").exists()
