from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.io.errors import TrajectoryFileError
from geoloc_ros.io.estimates import (
    EstimateLogWriter,
    group_by_source,
    iter_estimates,
    read_estimates,
    write_estimates,
)


def _estimate(k: int, source: str = "bovw") -> PoseEstimate:
    rng = np.random.default_rng(k)
    a = rng.normal(size=(6, 6))
    return PoseEstimate(
        1_700_000_000_000_000_000 + k * 50_000_000,
        Pose3D.from_xyz_ypr(rng.normal(0, 50, 3), *rng.uniform(-0.5, 0.5, 3)),
        a @ a.T + np.eye(6) * 0.1,
        source,
        info={
            "inliers": np.int64(100 + k),
            "score": np.float32(0.5),
            "ratio": float("nan"),
            "ids": np.arange(3),
        },
    )


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    estimates = [_estimate(k, "bovw" if k % 2 else "posenet") for k in range(10)]
    path = tmp_path / "estimates.jsonl"
    assert write_estimates(path, estimates) == 10
    back = read_estimates(path)
    assert len(back) == 10
    for original, read in zip(estimates, back, strict=True):
        assert read.stamp_ns == original.stamp_ns
        assert (read.source, read.frame_id) == (original.source, original.frame_id)
        assert np.array_equal(read.covariance, original.covariance)  # shortest repr round-trips floats
        assert np.allclose(read.pose.as_matrix(), original.pose.as_matrix(), atol=1e-12)
        assert read.info == {
            "inliers": original.info["inliers"],
            "score": 0.5,
            "ratio": None,
            "ids": [0, 1, 2],
        }
    groups = group_by_source(back)
    assert sorted(groups) == ["bovw", "posenet"] and len(groups["bovw"]) == 5


def test_streaming_writer_commits_on_close_only(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with EstimateLogWriter(path) as writer:
        writer.write(_estimate(0))
        assert not path.exists()  # still a hidden temporary file
        writer.write_all([_estimate(1), _estimate(2)])
    assert writer.count == 3 and len(read_estimates(path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_an_exception_discards_the_log(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with pytest.raises(RuntimeError), EstimateLogWriter(path) as writer:
        writer.write(_estimate(0))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_existing_log_is_refused_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_estimates(path, [_estimate(0)])
    with pytest.raises(OutputExistsError):
        EstimateLogWriter(path)
    write_estimates(path, [_estimate(1), _estimate(2)], overwrite=True)
    assert len(read_estimates(path)) == 2


def test_non_finite_pose_cannot_be_logged(tmp_path: Path) -> None:
    bad = _estimate(0)
    bad.covariance[1, 1] = np.nan
    with (
        pytest.raises(TrajectoryFileError, match="covariance has non-finite"),
        EstimateLogWriter(tmp_path / "log.jsonl") as writer,
    ):
        writer.write(bad)
    assert list(tmp_path.iterdir()) == []


def _write_lines(path: Path, records: list[object]) -> None:
    header = {"format": "geoloc_ros/estimates", "version": 1}
    path.write_text(
        "\n".join(json.dumps(r) if not isinstance(r, str) else r for r in [header, *records]) + "\n"
    )


def _good_record() -> dict:
    return {
        "stamp_ns": 5,
        "source": "bovw",
        "frame_id": "map",
        "position": [1.0, 2.0, 3.0],
        "orientation_xyzw": [0.0, 0.0, 0.0, 1.0],
        "covariance": np.eye(6).ravel().tolist(),
        "info": {},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stamp_ns": 1.5}, "'stamp_ns' must be an integer"),
        ({"covariance": [1.0] * 35}, "'covariance' must be a list of 36"),
        ({"orientation_xyzw": [0, 0, 0, 2]}, "not a unit quaternion"),
        ({"position": [1, "a", 3]}, "'position' must hold numbers"),
        ({"extra": 1}, "unknown field"),
        ({"source": 3}, "'source' must be a string"),
    ],
)
def test_malformed_records_name_file_line_and_field(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "log.jsonl"
    _write_lines(path, [_good_record(), {**_good_record(), **change}])
    with pytest.raises(TrajectoryFileError, match=f"{path}:3: .*{message}"):
        read_estimates(path)


def test_missing_field_bad_json_and_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    record = _good_record()
    del record["covariance"]
    _write_lines(path, [record])
    with pytest.raises(TrajectoryFileError, match=r":2: missing field\(s\) \['covariance'\]"):
        read_estimates(path)
    _write_lines(path, ["{not json"])
    with pytest.raises(TrajectoryFileError, match=":2: invalid JSON"):
        read_estimates(path)
    path.write_text(json.dumps(_good_record()) + "\n")
    with pytest.raises(TrajectoryFileError, match=":1: not an estimate log"):
        read_estimates(path)
    path.write_text(json.dumps({"format": "geoloc_ros/estimates", "version": 99}) + "\n")
    with pytest.raises(TrajectoryFileError, match="version 99"):
        read_estimates(path)
    path.write_text("")
    with pytest.raises(TrajectoryFileError, match="empty file"):
        list(iter_estimates(path))
