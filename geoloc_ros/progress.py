"""Progress of long loops, on a terminal and off it (Docker logs, CI, ``| tee``).

:func:`progress_bar` is ``tqdm`` with one difference: where standard error is not a terminal, instead
of staying silent (``tqdm(disable=None)``) it logs a line through :mod:`logging` at most every
``GEOLOC_PROGRESS_INTERVAL_S`` seconds (default 10; a step slower than that gets a line when it ends)
with the count, the rate and the remaining time::

    INFO geoloc_ros.progress: localize:  42% 440/1046 [00:21<00:29, 20.5frame/s]

so a long job in a log shows that it moves and when it will end. Those lines are INFO: ``-q`` hides
them. On a terminal it is the usual bar.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sized
from typing import Any, TypeVar

from tqdm import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_INTERVAL_S = 10.0
INTERVAL_ENV = "GEOLOC_PROGRESS_INTERVAL_S"
_LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_LOG_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"


class _LogStream:
    """A file for tqdm that turns each refresh into one log record."""

    def __init__(self, target: logging.Logger) -> None:
        self._logger = target

    def write(self, text: str) -> int:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self._logger.info(line)
        return len(text)

    def flush(self) -> None:
        """Records are emitted as they are written."""


def interval_s() -> float:
    """Seconds between two progress lines off a terminal (``GEOLOC_PROGRESS_INTERVAL_S``)."""
    text = os.environ.get(INTERVAL_ENV)
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        logger.warning("%s=%r is not a number; using %g s", INTERVAL_ENV, text, DEFAULT_INTERVAL_S)
        return DEFAULT_INTERVAL_S
    return max(value, 0.0)


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    disable: bool | None = None,
    **kwargs: Any,
) -> tqdm:
    """``tqdm(iterable, total=..., desc=..., **kwargs)``; ``disable=None`` (the default) means a bar on a
    terminal and log lines elsewhere, ``True`` nothing, ``False`` always show progress."""
    if disable is True:
        return tqdm(iterable, total=total, desc=desc, disable=True, **kwargs)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, disable=False, **kwargs)
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    quiet = not logger.isEnabledFor(logging.INFO)
    every = interval_s()
    kwargs.pop("leave", None)  # a finished loop's last line is worth keeping in a log
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=quiet,
        file=_LogStream(logger),
        mininterval=every,
        maxinterval=max(every, 10.0),
        bar_format=_LOG_FORMAT if total else _LOG_FORMAT_NO_TOTAL,
        dynamic_ncols=False,
        ascii=True,
        leave=True,
        **kwargs,
    )
