"""``geoloc localize`` (geoloc_ros/cli/localize.py) on the tiny scenario."""

import csv
import json

import pytest
import yaml
from click.testing import CliRunner

from geoloc_ros.cli.main import cli, main
from geoloc_ros.io.estimates import read_estimates
from geoloc_ros.io.tum import read_tum


def test_localize_writes_estimates_trajectory_and_summary(tiny_sim_dir, tiny_map_dir, tmp_path, capsys):
    config = tmp_path / "localize.yaml"
    config.write_text(yaml.safe_dump({"features": {"fast": False}, "rejection": {"min_inliers": 15}}))
    out = tmp_path / "run"
    args = [
        "localize",
        "--bag",
        str(tiny_sim_dir / "drive"),
        "--map",
        str(tiny_map_dir),
        "--out",
        str(out),
        "--config",
        str(config),
        "--max-frames",
        "12",
        "--verify",
        "sizes",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}:" in result.output and "frames localized" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 12 and summary["localized"] >= 8
    assert set(summary["stage_ms"]) == {"features", "retrieval", "matching", "ransac", "total"}
    estimates = read_estimates(out / "estimates.jsonl")
    assert len(estimates) == summary["localized"]
    assert all(e.source == "bovw" and e.covariance.shape == (6, 6) for e in estimates)
    trajectory = read_tum(out / "trajectory.tum")
    assert list(trajectory.stamps_ns) == [e.stamp_ns for e in estimates]
    # Planar like every TUM file (docs/formats.md): comparable with the report's and the simulator's.
    assert all(p[2] == 0.0 for p in trajectory.positions)
    for p, e in zip(trajectory.positions, estimates, strict=True):
        assert tuple(p[:2]) == pytest.approx(tuple(e.position[:2]), abs=1e-8)
    with (out / "frames.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and sum(r["status"] == "localized" for r in rows) == len(estimates)
    assert yaml.safe_load((out / "config.yaml").read_text())["features"]["fast"] is False

    # An existing output is refused (one-line error, status 2) unless --overwrite.
    capsys.readouterr()
    assert main(args) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--no-pipeline", "--gps-prior", "--max-frames", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["gps_prior"] is True and summary["pipelined"] is False


def test_localize_reports_bad_inputs(tiny_sim_dir, tiny_map_dir, tmp_path, capsys):
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(yaml.safe_dump({"matching": {"ratio": 1.5}}))
    args = [
        "localize",
        "--bag",
        str(tiny_sim_dir / "drive"),
        "--map",
        str(tiny_map_dir),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*args, "--config", str(bad_config)]) == 2
    assert "matching.ratio" in capsys.readouterr().err
    assert (
        main(
            [
                "localize",
                "--bag",
                str(tiny_sim_dir / "drive"),
                "--map",
                str(tmp_path),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "manifest.json" in capsys.readouterr().err
