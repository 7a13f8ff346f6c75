"""Where the map build's per-panorama tasks run: in this process, or on Dask (local or remote).

:func:`open_runner` gives a :class:`TaskRunner`:

* ``scheduler="tcp://host:8786"``: a :class:`distributed.Client` connected to an existing cluster
  (workers need geoloc_ros installed and the panorama set at the same path);
* otherwise, with more than one worker (default: every core), a :class:`distributed.LocalCluster`
  of single-threaded worker processes bound to 127.0.0.1, started for the build and shut down
  after it;
* with one worker, the tasks run in this process (no cluster to start: small maps and tests).

Both Dask cases share one code path (``client.submit`` + ``as_completed``) with a bounded number of
tasks in flight, so results stream back as they complete and memory stays bounded however many
panoramas there are. Every task on Dask goes through :func:`run_build_task`, on any cluster
(ours or one an operator started): BLAS, OpenMP (faiss) and OpenCV single-threaded, since a worker
per core is the parallelism and multithreaded BLAS on a busy core is many times slower; and glibc's
malloc reusing freed blocks, which Dask's nanny turns off (3x the CPU per panorama, issue 17).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import cv2
import numpy as np
from distributed import Client, LocalCluster, as_completed
from threadpoolctl import threadpool_limits

from geoloc_ros.mapping.errors import MapBuildError

logger = logging.getLogger(__name__)

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENCV_FOR_THREADS_NUM": "1",
}
"""Environment of local Dask worker processes, set before they import numpy, faiss or OpenCV."""

_CONNECT_TIMEOUT_S = 30
# Array arguments larger than this are scattered to a worker rather than embedded in the task.
_SCATTER_BYTES = 1 << 20


Task = tuple[str, tuple[Any, ...]]
"""A task: a label for error messages (e.g. the panorama id) and the function's arguments."""


class TaskRunner(Protocol):
    """Runs one function over many argument tuples; results come back in completion order."""

    @property
    def n_workers(self) -> int: ...

    @property
    def description(self) -> str: ...

    def share(self, value: Any) -> Any:
        """A handle on ``value`` to pass as an argument of many tasks (sent to each worker once)."""
        ...

    def imap_unordered(
        self, function: Callable[..., Any], tasks: Iterable[Task], max_in_flight: int
    ) -> Iterator[tuple[str, Any]]:
        """``(label, function(*args))`` for every task, as they complete; a failure raises
        :class:`MapBuildError` naming the task's label, after cancelling the others."""
        ...


class InProcessRunner:
    """Runs tasks one after the other in this process."""

    n_workers = 1
    description = "in process"

    def share(self, value: Any) -> Any:
        return value

    def imap_unordered(
        self, function: Callable[..., Any], tasks: Iterable[Task], max_in_flight: int
    ) -> Iterator[tuple[str, Any]]:
        for label, args in tasks:
            try:
                result = function(*args)
            except MapBuildError:
                raise
            except Exception as exc:
                raise MapBuildError(f"{label}: {type(exc).__name__}: {exc}") from exc
            yield label, result


_MALLOC_MMAP_THRESHOLD = 32 << 20
"""glibc's own ceiling for its dynamic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
_MALLOC_TRIM_THRESHOLD = 2 * _MALLOC_MMAP_THRESHOLD
"""As glibc's dynamic rule sets it: twice the mmap threshold."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _reuse_freed_memory() -> bool:
    """Let glibc's malloc keep and reuse freed blocks up to 32 MiB in this process (once).

    Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), which also turns off glibc's dynamic mmap
    threshold: every array over 128 kB is then a fresh ``mmap`` that the kernel zero-fills page by
    page on first touch and unmaps on ``free``. The views' passes over 2-million-point arrays made
    98x the page faults of the same panorama in one process (1.9 M against 19 k) and cost 3x its
    CPU time (BENCHMARKS.md, issue 17). These are the thresholds glibc itself reaches in a process
    that allocates such arrays; False where ``mallopt`` is missing (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(_M_MMAP_THRESHOLD, _MALLOC_MMAP_THRESHOLD)
    return bool(mallopt(_M_TRIM_THRESHOLD, _MALLOC_TRIM_THRESHOLD) and mmap_set)


def run_build_task(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` as a Dask worker runs a build task, whoever started that worker.

    A worker per core is the parallelism, so the task's thread runs BLAS, OpenMP (faiss) and
    OpenCV on one thread (``threadpoolctl``; OpenMP's limit is per thread, so it is set in the
    thread that runs the task, not in a worker plugin), and the process's malloc reuses freed
    memory (:func:`_reuse_freed_memory`). The limits stay for the worker's later tasks."""
    _reuse_freed_memory()
    cv2.setNumThreads(1)
    threadpool_limits(limits=1)
    return function(*args)


class DaskRunner:
    """Runs tasks on a Dask cluster through ``client`` (submit + as_completed, bounded in flight)."""

    def __init__(self, client: Client, description: str) -> None:
        self.client = client
        self.description = description
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        self._n_workers = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    @property
    def n_workers(self) -> int:
        return self._n_workers

    def share(self, value: Any) -> Any:
        return self.client.scatter(value, broadcast=True, hash=False)

    def imap_unordered(
        self, function: Callable[..., Any], tasks: Iterable[Task], max_in_flight: int
    ) -> Iterator[tuple[str, Any]]:
        pending = iter(tasks)
        labels: dict[Any, str] = {}
        completed = as_completed()

        def submit_next() -> bool:
            try:
                label, args = next(pending)
            except StopIteration:
                return False
            sent = tuple(self.client.scatter(a, hash=False) if _is_large_array(a) else a for a in args)
            # pure=False: a retried build must not reuse results of a previous identical call.
            future = self.client.submit(run_build_task, function, *sent, pure=False)
            labels[future] = label
            completed.add(future)
            return True

        for _ in range(max(1, max_in_flight)):
            if not submit_next():
                break
        try:
            for future in completed:
                label = labels.pop(future)
                try:
                    result = future.result()
                except MapBuildError:
                    raise
                except Exception as exc:
                    raise MapBuildError(f"{label}: {type(exc).__name__}: {exc}") from exc
                finally:
                    future.release()
                submit_next()
                yield label, result
        finally:
            if labels:
                self.client.cancel(list(labels))


def _is_large_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.nbytes > _SCATTER_BYTES


def _connect(scheduler: str) -> Client:
    try:
        return Client(scheduler, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise MapBuildError(f"cannot connect to the Dask scheduler {scheduler}: {exc}") from None


@contextlib.contextmanager
def open_runner(workers: int | None = None, scheduler: str | None = None) -> Iterator[TaskRunner]:
    """The runner for ``workers`` local processes (default: every core) or the cluster at ``scheduler``."""
    if workers is not None and workers < 1:
        raise MapBuildError(f"workers must be >= 1, got {workers}")
    if scheduler:
        client = _connect(scheduler)
        try:
            yield DaskRunner(client, f"Dask cluster at {scheduler}")
        finally:
            client.close()
        return
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers == 1:
        yield InProcessRunner()
        return
    logger.info("starting a local Dask cluster of %d single-threaded worker processes", n_workers)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        # The scheduler always serves HTTP (health, metrics): on loopback, at a free port.
        dashboard_address="127.0.0.1:0",
        env=SINGLE_THREAD_ENV,
        silence_logs=logging.WARNING,
    )
    try:
        client = Client(cluster)
        try:
            yield DaskRunner(client, f"local Dask cluster of {n_workers} processes")
        finally:
            client.close()
    finally:
        cluster.close()
