"""`geoloc evaluate` and `geoloc demo` through click, on the tiny scenario."""

import json

import pytest
from click.testing import CliRunner

from geoloc_ros.cli.main import cli

pytestmark = pytest.mark.slow


def test_evaluate_prints_the_paper_table_and_refuses_to_overwrite(tiny_sim_dir, tiny_map_dir, tmp_path):
    out = tmp_path / "report"
    args = ["evaluate", "--bag", str(tiny_sim_dir / "drive"), "--map", str(tiny_map_dir), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Continuity" in result.output and "Seed BoVW (augmented SV)" in result.output
    assert (out / "report.md").is_file() and (out / "figures" / "map.png").stat().st_size > 10_000
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "already exists" in str(again.exception)


def test_demo_end_to_end_on_the_tiny_town(tmp_path, tiny_posenet_model):
    # A full run on a fresh directory: simulate, build, evaluate (with a given PoseNet model).
    out = tmp_path / "demo"
    args = ["demo", "--scenario", "tiny", "--out", str(out), "--posenet", str(tiny_posenet_model)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for section in ("1/4 simulate", "2/4 build", "3/4 PoseNet", "4/4 localize", "Continuity"):
        assert section in result.output
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert {"bovw", "posenet", "posenet_temporal", "fused", "gps"} <= set(metrics["sources"])
    # A second run reuses the simulation and the map.
    second = CliRunner().invoke(cli, [*args, "--no-posenet"])
    assert second.exit_code == 0, second.output
    assert second.output.count("reusing") == 2
