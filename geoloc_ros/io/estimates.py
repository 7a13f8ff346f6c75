"""A log of :class:`~geoloc_ros.geometry.estimate.PoseEstimate`: JSON Lines, one estimate a line.

The first line is a header ``{"format": "geoloc_ros/estimates", "version": 1}``; every other line
is one estimate with its full 6x6 covariance (row-major, 36 values), source, frame and ``info``::

    {"stamp_ns": 1700000000050000000, "source": "bovw", "frame_id": "map",
     "position": [x, y, z], "orientation_xyzw": [qx, qy, qz, qw],
     "covariance": [36 floats], "info": {"inliers": 143}}

Floats are written with Python's shortest round-trip repr, so reading gives back the same numbers.
:class:`EstimateLogWriter` streams to a hidden temporary file and renames it into place when closed:
an interrupted run leaves no half-written log. Positions, orientations and covariances must be
finite; non-finite floats inside ``info`` are written as ``null``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.atomic import give_default_mode, refuse_existing_output
from geoloc_ros.io.errors import TrajectoryFileError

logger = logging.getLogger(__name__)

LOG_FORMAT = "geoloc_ros/estimates"
LOG_VERSION = 1
_FIELDS = ("stamp_ns", "source", "frame_id", "position", "orientation_xyzw", "covariance", "info")


def _json_safe(value: Any, where: str) -> Any:
    """``info`` values as plain JSON: numpy scalars/arrays converted, non-finite floats -> None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist(), where)
    if isinstance(value, list | tuple):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return _json_safe(value.item(), where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TrajectoryFileError(f"{where}: cannot store a {type(value).__name__} in an estimate log")


def estimate_to_record(estimate: PoseEstimate) -> dict[str, Any]:
    """The JSON object of one estimate (raises on non-finite pose or covariance)."""
    where = f"estimate from '{estimate.source}' at {estimate.stamp_ns} ns"
    position = [float(v) for v in estimate.position]
    orientation = [float(v) for v in estimate.pose.quaternion]
    covariance = [float(v) for v in np.asarray(estimate.covariance).reshape(36)]
    for name, values in (("position", position), ("orientation", orientation), ("covariance", covariance)):
        if not all(math.isfinite(v) for v in values):
            raise TrajectoryFileError(f"{where}: {name} has non-finite values; it cannot be logged")
    return {
        "stamp_ns": int(estimate.stamp_ns),
        "source": estimate.source,
        "frame_id": estimate.frame_id,
        "position": position,
        "orientation_xyzw": orientation,
        "covariance": covariance,
        "info": _json_safe(estimate.info, f"{where}: info"),
    }


def _number_list(record: Mapping[str, Any], key: str, size: int, where: str) -> np.ndarray:
    value = record[key]
    if not isinstance(value, list) or len(value) != size:
        raise TrajectoryFileError(f"{where}: '{key}' must be a list of {size} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise TrajectoryFileError(f"{where}: '{key}' must hold numbers only")
    array = np.array(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise TrajectoryFileError(f"{where}: '{key}' has non-finite values")
    return array


def record_to_estimate(record: Any, where: str) -> PoseEstimate:
    """Validate one JSON object and build its estimate; errors name ``where`` and the field."""
    if not isinstance(record, dict):
        raise TrajectoryFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in _FIELDS if k not in record]
    if missing:
        raise TrajectoryFileError(f"{where}: missing field(s) {missing}")
    unknown = sorted(set(record) - set(_FIELDS))
    if unknown:
        raise TrajectoryFileError(f"{where}: unknown field(s) {unknown}")
    stamp = record["stamp_ns"]
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        raise TrajectoryFileError(f"{where}: 'stamp_ns' must be an integer, got {stamp!r}")
    for key in ("source", "frame_id"):
        if not isinstance(record[key], str):
            raise TrajectoryFileError(f"{where}: '{key}' must be a string, got {record[key]!r}")
    if not isinstance(record["info"], dict):
        raise TrajectoryFileError(f"{where}: 'info' must be an object")
    position = _number_list(record, "position", 3, where)
    quaternion = _number_list(record, "orientation_xyzw", 4, where)
    if abs(float(np.linalg.norm(quaternion)) - 1.0) > 1e-6:
        raise TrajectoryFileError(f"{where}: 'orientation_xyzw' is not a unit quaternion")
    covariance = _number_list(record, "covariance", 36, where).reshape(6, 6)
    return PoseEstimate(
        stamp,
        Pose3D.from_xyz_quaternion(position, quaternion),
        covariance,
        record["source"],
        record["frame_id"],
        record["info"],
    )


class EstimateLogWriter:
    """Stream estimates to a JSONL log; the file appears at ``path`` only when :meth:`close` runs.

    Use as a context manager: leaving the block normally commits the log, an exception discards it.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        refuse_existing_output(self.path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        self._tmp = Path(tmp)
        give_default_mode(self._tmp)
        self._file: IO[str] | None = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0
        self._file.write(json.dumps({"format": LOG_FORMAT, "version": LOG_VERSION}) + "\n")

    def write(self, estimate: PoseEstimate) -> None:
        if self._file is None:
            raise TrajectoryFileError(f"{self.path}: the estimate log is already closed")
        self._file.write(json.dumps(estimate_to_record(estimate), allow_nan=False) + "\n")
        self.count += 1

    def write_all(self, estimates: Iterable[PoseEstimate]) -> None:
        for estimate in estimates:
            self.write(estimate)

    def close(self) -> None:
        """Flush, fsync and rename the log into place."""
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        logger.debug("wrote %d estimates to %s", self.count, self.path)

    def abort(self) -> None:
        """Discard everything written so far; ``path`` is left as it was."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> EstimateLogWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_estimates(path: str | Path, estimates: Iterable[PoseEstimate], overwrite: bool = False) -> int:
    """Write a whole log at once; returns the number of estimates."""
    with EstimateLogWriter(path, overwrite) as writer:
        writer.write_all(estimates)
        return writer.count


def iter_estimates(path: str | Path) -> Iterator[PoseEstimate]:
    """Read a log lazily, validating the header and every line."""
    p = Path(path)
    try:
        handle = p.open(encoding="utf-8")
    except FileNotFoundError:
        raise TrajectoryFileError(f"{p}: estimate log not found") from None
    except OSError as exc:
        raise TrajectoryFileError(f"{p}: cannot read estimate log: {exc.strerror}") from None
    with handle:
        header_seen = False
        for number, line in enumerate(handle, start=1):
            where = f"{p}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrajectoryFileError(f"{where}: invalid JSON: {exc.msg}") from None
            if not header_seen:
                if not isinstance(record, dict) or record.get("format") != LOG_FORMAT:
                    raise TrajectoryFileError(f"{where}: not an estimate log (no '{LOG_FORMAT}' header)")
                if record.get("version") != LOG_VERSION:
                    raise TrajectoryFileError(
                        f"{where}: estimate log version {record.get('version')!r} is not supported "
                        f"(this reader knows version {LOG_VERSION})"
                    )
                header_seen = True
                continue
            yield record_to_estimate(record, where)
        if not header_seen:
            raise TrajectoryFileError(f"{p}: empty file, not an estimate log")


def read_estimates(path: str | Path) -> list[PoseEstimate]:
    return list(iter_estimates(path))


def group_by_source(estimates: Sequence[PoseEstimate]) -> dict[str, list[PoseEstimate]]:
    """Estimates per ``source``, each list in stamp order."""
    groups: dict[str, list[PoseEstimate]] = {}
    for estimate in estimates:
        groups.setdefault(estimate.source, []).append(estimate)
    return {name: sorted(items, key=lambda e: e.stamp_ns) for name, items in groups.items()}
