from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.io.estimates import group_by_source, read_estimates
from geoloc_ros.io.recording import recording_summary, summary_text, write_recording
from geoloc_ros.io.tum import read_tum

NS = 1_000_000_000


def _estimates(source: str, stamps_s: list[float]) -> list[PoseEstimate]:
    cov = np.diag([1.0, 1.0, 0.01])
    return [PoseEstimate.planar(round(t * NS), t, 2 * t, 0.1, cov, source=source) for t in stamps_s]


def test_summary_counts_spans_and_rates() -> None:
    summary = recording_summary({"bovw": _estimates("bovw", [1.0, 1.5, 3.0]), "fused": []}, wall_s=4.04)
    assert summary["wall_s"] == 4.04
    assert summary["sources"]["bovw"] == {
        "estimates": 3,
        "first_stamp_ns": NS,
        "last_stamp_ns": 3 * NS,
        "span_s": 2.0,
        "rate_hz": 1.0,
    }
    assert summary["sources"]["fused"]["estimates"] == 0 and summary["sources"]["fused"]["rate_hz"] is None
    text = summary_text(summary)
    assert "bovw" in text and "3 poses over 2.0 s, 1.0 Hz" in text


def test_recording_is_written_like_an_offline_run(tmp_path: Path) -> None:
    # Received out of order, with a repeated stamp (the last one is kept).
    bovw = _estimates("bovw", [2.0, 1.0, 3.0])
    bovw.append(PoseEstimate.planar(3 * NS, 9.0, 9.0, 0.0, np.eye(3), source="bovw"))
    by_source = {"bovw": bovw, "fused": _estimates("fused", [1.0, 2.0]), "posenet": []}
    out = write_recording(tmp_path / "rec", by_source, recording_summary(by_source, 1.0))
    recorded = group_by_source(read_estimates(out / "estimates.jsonl"))
    assert [e.stamp_ns for e in recorded["bovw"]] == [NS, 2 * NS, 3 * NS]
    assert recorded["bovw"][-1].position[0] == 9.0
    trajectory = read_tum(out / "trajectory_bovw.tum")
    assert trajectory.stamps_ns.tolist() == [NS, 2 * NS, 3 * NS]
    assert np.all(trajectory.positions[:, 2] == 0.0)
    assert math.isclose(trajectory.positions[0, 1], 2.0)
    assert (out / "trajectory_posenet.tum").read_text() == "# no pose\n"
    assert json.loads((out / "summary.json").read_text())["sources"]["fused"]["estimates"] == 2
    with pytest.raises(OutputExistsError):
        write_recording(out, by_source, {})
