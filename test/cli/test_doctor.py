"""`geoloc doctor` and `geoloc completion` as a user runs them."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from geoloc_ros.cli.main import cli


def test_doctor_passes_here_and_fails_naming_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert "missing  onnxruntime" in result.output and "missing: onnxruntime" in result.output


def test_completion_script_and_completions(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["completion", "bash"])
    assert result.exit_code == 0 and "_GEOLOC_COMPLETE=bash_complete" in result.output
    # What bash asks for when the user types "geoloc lo<TAB>" and "geoloc evaluate --com<TAB>".
    for words, cword, expected in (
        ("geoloc lo", "1", "plain,localize"),
        ("geoloc evaluate --com", "2", "plain,--compare"),
    ):
        monkeypatch.setenv("_GEOLOC_COMPLETE", "bash_complete")
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", cword)
        result = CliRunner().invoke(cli, [], prog_name="geoloc")
        assert expected in result.output.splitlines(), result.output
