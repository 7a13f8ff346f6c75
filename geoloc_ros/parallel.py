"""Ordered parallel map over spawned worker processes, shared by the simulator and view synthesis.

The project has one mechanism per purpose: this process pool for CPU-bound batch work on one
machine (``geoloc sim``, PoseNet view synthesis), Dask for the map build (it can spread over a
cluster: :mod:`geoloc_ros.mapping.runner`), and one pipelining thread for drive localization
(:mod:`geoloc_ros.pipelines.localize_drive`).
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

Call = tuple[Callable[..., Any], tuple[Any, ...]]


def process_map(
    calls: Iterable[Call],
    workers: int,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    lookahead_per_worker: int = 4,
) -> Iterator[Any]:
    """``fn(*args)`` of every call, yielded in the calls' order, computed by ``workers`` processes.

    Processes are spawned, not forked (OpenCV's and BLAS's threads do not survive a fork); each runs
    ``initializer(*initargs)`` first. At most ``lookahead_per_worker * workers`` calls are queued,
    so a long run does not hold every pending result in memory. On an error or an interrupt the
    queued calls are cancelled instead of waited for.
    """
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=initializer,
        initargs=initargs,
    )
    try:
        pending: deque[Future[Any]] = deque()
        remaining = iter(calls)
        for fn, args in itertools.islice(remaining, lookahead_per_worker * workers):
            pending.append(pool.submit(fn, *args))
        while pending:
            result = pending.popleft().result()
            nxt = next(remaining, None)
            if nxt is not None:
                pending.append(pool.submit(nxt[0], *nxt[1]))
            yield result
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
