"""The output options every writing command shares (``--out``/``--overwrite`` and their policy)."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from geoloc_ros.cli.common import output_options
from geoloc_ros.cli.main import main


def _command(calls: list[Path]) -> click.Command:
    @click.command()
    @click.option("--map", "map_dir", type=click.Path(path_type=Path), help="Input.")
    @output_options("Where to write.", inputs=("map_dir",))
    def command(map_dir: Path | None, out_dir: Path, overwrite: bool) -> None:
        """A command that writes OUT."""
        calls.append(out_dir)

    return command


def test_the_output_policy_runs_before_the_command(tmp_path: Path) -> None:
    calls: list[Path] = []
    command = _command(calls)
    (tmp_path / "exists").mkdir()
    runner = CliRunner()
    result = runner.invoke(command, ["--out", str(tmp_path / "new")])
    assert result.exit_code == 0 and calls == [tmp_path / "new"]
    result = runner.invoke(command, ["--out", str(tmp_path / "exists")])
    assert "already exists (pass --overwrite to replace it)" in str(result.exception)
    result = runner.invoke(command, ["--out", str(tmp_path / "exists"), "--overwrite"])
    assert result.exit_code == 0
    argv = ["--map", str(tmp_path / "exists"), "--out", str(tmp_path), "--overwrite"]
    result = runner.invoke(command, argv)
    assert "would replace the input" in str(result.exception)
    assert calls == [tmp_path / "new", tmp_path / "exists"]
    help_text = runner.invoke(command, ["--help"]).output
    assert "--out DIRECTORY" in help_text and "Replace an existing --out" in help_text


def test_every_writing_command_refuses_its_input_as_output(tmp_path: Path, capsys) -> None:
    """--out of a command that reads a bundle is refused when it is that bundle, before any work
    (the bundle here is an empty folder: had the command started, it would fail on that)."""
    bundle = tmp_path / "map"
    bundle.mkdir()
    commands = [
        ["localize", "--bag", str(tmp_path), "--map", str(bundle), "--out", str(bundle)],
        ["evaluate", "--bag", str(tmp_path), "--map", str(bundle), "--out", str(tmp_path)],
        ["map", "refine", str(bundle), "--out", str(bundle)],
        ["map", "compact", str(bundle), "--out", str(bundle)],
        ["posenet", "synthesize", "--map", str(bundle), "--out", str(bundle)],
    ]
    for argv in commands:
        assert main([*argv, "--overwrite"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("geoloc: error: output") and "would replace the input" in err, err
    assert bundle.is_dir() and not any(bundle.iterdir())
