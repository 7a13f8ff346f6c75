"""`geoloc evaluate --compare` and the evaluate command's argument checks (no drive needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoloc_ros.cli.main import cli
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.estimates import write_estimates
from geoloc_ros.sim.generate import read_groundtruth


def _report(directory: Path, mean: float) -> Path:
    directory.mkdir()
    document = {"metadata": {"bag": "x"}, "sources": {"fused": {"source": "fused", "mean_error_m": mean}}}
    (directory / "metrics.json").write_text(json.dumps(document), encoding="utf-8")
    return directory


def test_compare_prints_markdown_or_json_and_writes_both(tmp_path: Path) -> None:
    a, b = _report(tmp_path / "a", 2.0), _report(tmp_path / "b", 1.25)
    result = CliRunner().invoke(cli, ["evaluate", "--compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "| mean_error_m | 2 | 1.25 | -0.75 |" in result.output
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["evaluate", "--compare", str(a), str(b), "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["sources"]["fused"]["mean_error_m"]["difference"] == -0.75
    assert json.loads((out / "compare.json").read_text()) == document
    assert (out / "compare.md").read_text().startswith("# Report comparison")


def test_evaluate_names_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "missing --bag, --map" in result.output
    a = _report(tmp_path / "a", 1.0)
    result = CliRunner().invoke(cli, ["evaluate", "--compare", str(a), str(a), "--bag", str(a)])
    assert result.exit_code == 2 and "cannot be combined" in result.output


@pytest.mark.slow
def test_recorded_estimates_are_evaluated_against_the_drive(tiny_sim_dir, tiny_map_dir, tmp_path):
    """A live run's poses (here: the true track 1 m to the north) give the report of that offset."""
    drive = tiny_sim_dir / "drive"
    truth = read_groundtruth(drive)
    cov = np.diag([0.5, 0.5, 0.01])
    estimates = [
        PoseEstimate.planar(int(s), float(p[0]), float(p[1]) + 1.0, float(ypr[0]), cov, source="fused")
        for s, p, ypr in zip(truth["stamp_ns"], truth["position_enu"], truth["ypr_rad"], strict=True)
    ]
    write_estimates(tmp_path / "estimates.jsonl", estimates)
    out = tmp_path / "report"
    args = ["evaluate", "--bag", str(drive), "--map", str(tiny_map_dir), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--estimates", str(tmp_path / "estimates.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    fused = json.loads(result.output)["sources"]["fused"]
    assert fused["n_localized"] == fused["n_frames"] == len(estimates)
    assert fused["mean_error_m"] == pytest.approx(1.0, abs=0.1)
    # 1 m north is cos(yaw) m to the left of the track and sin(yaw) m ahead.
    yaw = truth["ypr_rad"][:, 0]
    assert fused["cross_track_rmse_m"] == pytest.approx(np.sqrt(np.mean(np.cos(yaw) ** 2)), abs=0.1)
    assert fused["along_track_rmse_m"] == pytest.approx(np.sqrt(np.mean(np.sin(yaw) ** 2)), abs=0.1)
    assert (out / "report.md").is_file() and (out / "tum" / "fused.tum").is_file()
    # the map's own panorama error, found beside the simulated drive as for a full evaluation
    assert "map panorama error" in (out / "report.md").read_text(encoding="utf-8")
