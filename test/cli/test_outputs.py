"""Every command that writes an output refuses an unwritable ``--out`` before any work starts."""

from __future__ import annotations

import pytest

from geoloc_ros.cli.main import main


@pytest.mark.parametrize(
    "command",
    [
        ["localize", "--bag", "{empty}", "--map", "{empty}", "--out", "{out}"],
        ["evaluate", "--bag", "{empty}", "--map", "{empty}", "--out", "{out}"],
        ["map", "build", "{empty}", "--out", "{out}"],
    ],
)
@pytest.mark.parametrize("out", ["/proc/geoloc_out", "{file}/out"])
def test_unwritable_out_fails_at_once_with_one_line(tmp_path, capsys, command, out):
    empty = tmp_path / "empty"  # not a bag, map or panorama set: the output is checked first
    empty.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fill = {"empty": str(empty), "file": str(a_file)}
    argv = [arg.format(out=out.format(**fill), **fill) for arg in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geoloc: error: output") and (
        "cannot write into /proc" in err or "not a folder" in err
    )
    assert len(err.splitlines()) == 1
