"""The output options every writing command shares (``--out``/``--overwrite`` and their policy)."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from click.testing import CliRunner

from geoloc_ros.cli.common import output_options, renamed_option
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


def test_a_renamed_option_keeps_its_old_spelling_with_a_warning(tmp_path: Path, caplog) -> None:
    calls: list[tuple[Path, ...]] = []

    @click.command()
    @renamed_option("--drive", "--bag", "bag", multiple=True, type=click.Path(path_type=Path))
    @output_options("Where to write.", inputs=("bag",))
    @click.option("--bag", "bag", multiple=True, type=click.Path(path_type=Path), help="Drives.")
    def command(bag: tuple[Path, ...], out_dir: Path, overwrite: bool) -> None:
        """A command that reads drives."""
        calls.append(bag)

    runner = CliRunner()
    out = ["--out", str(tmp_path / "out")]
    with caplog.at_level(logging.WARNING, logger="geoloc_ros.cli.common"):
        assert runner.invoke(command, ["--bag", "a", "--bag", "b", *out]).exit_code == 0
        assert not caplog.records
        assert runner.invoke(command, ["--drive", "a", "--drive", "b", *out]).exit_code == 0
    assert calls == [(Path("a"), Path("b"))] * 2
    assert [r.getMessage() for r in caplog.records] == [
        "--drive is deprecated (renamed --bag): it will go in a later release"
    ]
    both = runner.invoke(command, ["--bag", "a", "--drive", "b", *out])
    assert both.exit_code == 2 and "give --bag (or its old spelling --drive), not both" in both.output
    # the old spelling's value is an input of the output policy too
    inside = runner.invoke(command, ["--drive", str(tmp_path), "--out", str(tmp_path), "--overwrite"])
    assert "would replace the input" in str(inside.exception)
    assert "--drive" not in runner.invoke(command, ["--help"]).output
    assert len(calls) == 2


def test_map_refine_takes_survey_drives_as_bag_and_the_old_drive(tmp_path: Path, monkeypatch) -> None:
    """``geoloc map refine --bag`` (repeatable; ``--drive`` before) hands the drives to the refinement."""
    import geoloc_ros.pipelines.refine_map as refine_map

    seen: list[list[Path]] = []

    def fake_refine(bundle, out_dir, drives, config, overwrite, reuse):
        seen.append(drives)
        return {"fake": True}

    monkeypatch.setattr(refine_map, "refine_bundle", fake_refine)
    bundle, one, two = (tmp_path / n for n in ("map", "d1", "d2"))
    for folder in (bundle, one, two):
        folder.mkdir()
    for flag in ("--bag", "--drive"):
        argv = ["map", "refine", str(bundle), "--out", str(tmp_path / f"out{flag}"), "--json"]
        assert main([*argv, flag, str(one), flag, str(two)]) == 0
    assert seen == [[one, two], [one, two]]
