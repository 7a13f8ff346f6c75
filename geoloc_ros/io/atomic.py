"""Atomic file and directory writes: a crash or Ctrl-C never leaves a half-written output.

Files are written to a temporary sibling, flushed, fsynced and renamed over the target.
Directories are built in a temporary sibling and renamed into place when complete; an existing
target is refused unless ``overwrite=True``, in which case it is replaced only after the new one
is complete.

Temporary siblings are hidden and carry the writing process's id (``.<name>.pid<PID>.*``): the next
write of the same output removes those of processes that no longer run (a killed build), see
:func:`remove_stale_scratch`. :func:`check_output_writable` lets commands refuse an output they
could not write before any work starts.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from geoloc_ros.errors import GeolocError

logger = logging.getLogger(__name__)


class OutputExistsError(GeolocError, FileExistsError):
    """The output path exists and overwriting was not requested."""


class OutputNotWritableError(GeolocError, PermissionError):
    """An output cannot be written where it was asked for (checked before the work starts)."""


def scratch_prefix(target: Path) -> str:
    """Prefix of the hidden temporary siblings of ``target`` that this process creates."""
    return f".{target.name}.pid{os.getpid()}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_scratch(target: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by processes that no longer run (a killed
    build's staging folder); returns what was removed."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.pid(\d+)\.")
    removed = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.pid*"):
        match = pattern.match(path.name)
        if match is None or int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
        logger.warning("removed %s, left behind by a process that no longer runs", path)
    return removed


class OutputIsInputError(GeolocError, ValueError):
    """The output is one of the command's inputs or holds one: writing it would replace the input."""


def refuse_existing_output(path: str | Path, overwrite: bool = False) -> None:
    """Raise :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is off: the one
    wording of that refusal for every writer."""
    if not overwrite and Path(path).exists():
        raise OutputExistsError(f"output {path} already exists (pass --overwrite to replace it)")


def check_output_writable(
    path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> None:
    """Refuse, before any work, an output that exists (without ``overwrite``), that cannot be
    created (its nearest existing parent must be a folder this process can write into), or that is
    one of ``inputs`` or a folder holding one: replacing it would delete what is being read."""
    target = Path(path)
    resolved = target.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if resolved == source or resolved in source.parents:
            raise OutputIsInputError(
                f"output {target} would replace the input {given}: write it somewhere else "
                f"(inputs are never modified)"
            )
    refuse_existing_output(target, overwrite)
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputNotWritableError(f"output {target}: {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=scratch_prefix(target), suffix=".probe", dir=parent)
    except OSError as exc:
        raise OutputNotWritableError(
            f"output {target}: cannot write into {parent} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    # Reading the umask means setting it: briefly 022, a harmless value for other threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_mode(path: str | Path) -> None:
    """Give a temporary file or directory the mode a plain ``open``/``mkdir`` would have.

    ``tempfile`` creates them private (0600/0700); outputs renamed into place must stay readable
    by the other users a vehicle or a container runs nodes as.
    """
    full = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, full & ~_umask())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=scratch_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        give_default_mode(tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block exits without error.

    On error (or KeyboardInterrupt) the temporary directory is removed and ``path`` is untouched.
    """
    target = Path(path)
    refuse_existing_output(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(target)
    tmp = Path(tempfile.mkdtemp(prefix=scratch_prefix(target), suffix=".partial", dir=target.parent))
    try:
        give_default_mode(tmp)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, backup)
    try:
        os.replace(tmp, target)
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        if backup.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink(missing_ok=True)
    _fsync_dir(target.parent)
