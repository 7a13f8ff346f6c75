"""`geoloc evaluate --compare` and the evaluate command's argument checks (no drive needed)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from geoloc_ros.cli.main import cli


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
