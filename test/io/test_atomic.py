import json
import os
import stat
from pathlib import Path

import pytest

from geoloc_ros.io.atomic import OutputExistsError, atomic_directory, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_text(target, json.dumps({"x": 2}))
    assert json.loads(target.read_text()) == {"x": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_atomic_directory_commits_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as staging:
        (staging / "f.txt").write_text("hello")
        assert not out.exists()
    assert (out / "f.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_directory_interrupted_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), atomic_directory(out) as staging:
        (staging / "half.txt").write_text("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="already exists"), atomic_directory(out):
        pass
    with pytest.raises(RuntimeError), atomic_directory(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert (out / "old.txt").exists()  # a failed overwrite keeps the old output
    with atomic_directory(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_outputs_get_the_mode_of_a_plain_write_not_a_private_temporary_one(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "d") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    from geoloc_ros.io.atomic import OutputNotWritableError, check_output_writable

    check_output_writable(tmp_path / "new" / "deeper" / "out")  # missing folders are created later
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputNotWritableError, match=r"a_file is not a folder"):
        check_output_writable(tmp_path / "a_file" / "out")
    with pytest.raises(OutputNotWritableError, match=r"cannot write into /proc"):
        check_output_writable("/proc/geoloc_out")  # unwritable even for root
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError):
        check_output_writable(tmp_path / "exists")
    check_output_writable(tmp_path / "exists", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "exists"]  # no probe left


def test_an_output_that_is_or_holds_an_input_is_refused_even_with_overwrite(tmp_path):
    from geoloc_ros.io.atomic import OutputIsInputError, check_output_writable

    bundle = tmp_path / "town" / "map"
    bundle.mkdir(parents=True)
    for out in (bundle, tmp_path / "town", tmp_path / "town" / ".." / "town" / "map"):
        with pytest.raises(OutputIsInputError, match=r"would replace the input .*map"):
            check_output_writable(out, overwrite=True, inputs=[None, bundle])
    # beside the input, or inside it (nothing of it is replaced), is fine
    check_output_writable(tmp_path / "town" / "report", inputs=[bundle])
    check_output_writable(bundle / "report", inputs=[bundle])


def test_scratch_of_a_killed_process_is_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from geoloc_ros.io.atomic import remove_stale_scratch

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".map.pid{dead_pid}.abc.staging"
    stale.mkdir()
    (stale / "0.npz").write_bytes(b"x" * 100)
    alive = tmp_path / f".map.pid{os.getppid()}.def.partial"  # a running process's: kept
    alive.mkdir()
    other = tmp_path / f".mapx.pid{dead_pid}.ghi.partial"  # another output's: kept
    other.mkdir()
    with atomic_directory(tmp_path / "map") as staging:
        (staging / "manifest.json").write_text("{}")
    assert not stale.exists() and alive.is_dir() and other.is_dir()
    assert (tmp_path / "map" / "manifest.json").is_file()
    assert remove_stale_scratch(tmp_path / "map") == []
