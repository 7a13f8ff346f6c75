"""A real Dask cluster on this machine: one ``dask scheduler`` and N ``dask worker`` commands.

Each is its own process, started as an operator would start them on a cluster's machines (here
all bound to 127.0.0.1), and found through a scheduler file. Used by the scaling benchmark
(``bench_dask_scaling.py``) and by the test that a map built through such a cluster equals the
local build (test/mapping/test_build.py). On many machines, docs/map_bundle.md has the commands.

    with loopback_cluster(2, scratch_dir) as address:
        build_map(..., scheduler=address)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from distributed import Client

from geoloc_ros.cli.main import DASK_LOG_LEVEL_ENV
from geoloc_ros.mapping.runner import SINGLE_THREAD_ENV

_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0


def _dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m dask ARGS`` with the single-threaded library environment, output to ``log``.

    The cluster logs at INFO (who registered, who left) whatever this process inherited: `geoloc`
    quiets Dask through the environment, which would otherwise reach these logs too."""
    env = {**os.environ, **SINGLE_THREAD_ENV, DASK_LOG_LEVEL_ENV: "info"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate (then kill) the processes this module started, workers first."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for process in reversed(processes):
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_file(path: Path, processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    while not path.is_file() or not path.read_text().strip():
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"the Dask scheduler exited before writing {path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no scheduler file {path} after {_START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def loopback_cluster(n_workers: int, scratch: Path) -> Iterator[str]:
    """Start ``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes on
    127.0.0.1 (logs and the scheduler file in ``scratch``); yield the scheduler address once every
    worker has joined; stop them all on exit."""
    scratch.mkdir(parents=True, exist_ok=True)
    scheduler_file = scratch / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    deadline = time.monotonic() + _START_TIMEOUT_S
    processes = [
        _dask(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
            log=scratch / "scheduler.log",
        )
    ]
    try:
        _wait_for_file(scheduler_file, processes, deadline)
        address = str(json.loads(scheduler_file.read_text())["address"])
        for i in range(n_workers):
            processes.append(
                _dask(
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--name",
                    f"worker-{i}",
                    "--local-directory",
                    str(scratch / f"worker-{i}"),
                    log=scratch / f"worker-{i}.log",
                )
            )
        with Client(address, timeout=_START_TIMEOUT_S) as client:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
        yield address
    finally:
        _stop(processes)
