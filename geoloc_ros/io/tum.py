"""TUM trajectory files: one pose per line, ``timestamp tx ty tz qx qy qz qw``.

The format evo (``evo_ape tum ...``) and the TUM RGB-D tools read. Timestamps are seconds written
from integer nanoseconds with all nine decimals, and parsed back exactly (no float rounding), so a
round trip keeps ``stamp_ns``. Lines starting with ``#`` and blank lines are comments. Reading
validates every line and names the file and line of the first problem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.atomic import atomic_write_text, refuse_existing_output
from geoloc_ros.io.errors import TrajectoryFileError

logger = logging.getLogger(__name__)

TUM_HEADER = "# timestamp tx ty tz qx qy qz qw"
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class TumTrajectory:
    """Poses ``T_map_base``: stamps (int ns), positions ``(N, 3)`` m, quaternions ``(N, 4)`` x, y, z, w."""

    stamps_ns: np.ndarray
    positions: np.ndarray
    quaternions_xyzw: np.ndarray

    def __post_init__(self) -> None:
        stamps = np.asarray(self.stamps_ns, dtype=np.int64).reshape(-1)
        positions = np.asarray(self.positions, dtype=float).reshape(-1, 3)
        quats = np.asarray(self.quaternions_xyzw, dtype=float).reshape(-1, 4)
        if not stamps.size == positions.shape[0] == quats.shape[0]:
            raise ValueError(
                f"TUM trajectory needs as many stamps ({stamps.size}), positions ({positions.shape[0]}) "
                f"and quaternions ({quats.shape[0]})"
            )
        object.__setattr__(self, "stamps_ns", stamps)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "quaternions_xyzw", quats)

    def __len__(self) -> int:
        return int(self.stamps_ns.size)

    @classmethod
    def from_estimates(cls, estimates: Sequence[PoseEstimate]) -> TumTrajectory:
        return cls(
            np.array([e.stamp_ns for e in estimates], dtype=np.int64),
            np.array([e.position for e in estimates], dtype=float).reshape(-1, 3),
            np.array([e.pose.quaternion for e in estimates], dtype=float).reshape(-1, 4),
        )


def format_stamp(stamp_ns: int) -> str:
    """Integer nanoseconds -> ``seconds.nanoseconds`` with nine decimals, exactly."""
    stamp_ns = int(stamp_ns)
    sign = "-" if stamp_ns < 0 else ""
    seconds, nanoseconds = divmod(abs(stamp_ns), _NS_PER_S)
    return f"{sign}{seconds}.{nanoseconds:09d}"


def parse_stamp(text: str) -> int:
    """Seconds as text -> integer nanoseconds, exactly (rounded to the nearest ns)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"timestamp '{text}' is not a number") from None
    if not value.is_finite():
        raise ValueError(f"timestamp '{text}' is not finite")
    return int((value * _NS_PER_S).to_integral_value())


def format_tum(trajectory: TumTrajectory, header: bool = True) -> str:
    """The file's text; positions and quaternions with nine decimals (nanometre resolution)."""
    lines = [TUM_HEADER] if header else []
    for stamp, p, q in zip(
        trajectory.stamps_ns, trajectory.positions, trajectory.quaternions_xyzw, strict=True
    ):
        values = " ".join(f"{v:.9f}" for v in (*p, *q))
        lines.append(f"{format_stamp(int(stamp))} {values}")
    return "\n".join(lines) + "\n"


def write_tum(
    path: str | Path, trajectory: TumTrajectory | Sequence[PoseEstimate], overwrite: bool = False
) -> None:
    """Write a trajectory (or a sequence of estimates) as a TUM file, atomically."""
    target = Path(path)
    refuse_existing_output(target, overwrite)
    if not isinstance(trajectory, TumTrajectory):
        trajectory = TumTrajectory.from_estimates(trajectory)
    _check_writable(trajectory, target)
    atomic_write_text(target, format_tum(trajectory))
    logger.debug("wrote %d poses to %s", len(trajectory), target)


def _check_writable(trajectory: TumTrajectory, target: Path) -> None:
    values = np.concatenate([trajectory.positions, trajectory.quaternions_xyzw], axis=1)
    bad_rows = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
    if bad_rows.size:
        row = int(bad_rows[0])
        stamp = format_stamp(int(trajectory.stamps_ns[row]))
        raise TrajectoryFileError(f"{target}: pose {row} (stamp {stamp}) has non-finite values")
    if np.any(np.diff(trajectory.stamps_ns) <= 0):
        row = int(np.flatnonzero(np.diff(trajectory.stamps_ns) <= 0)[0]) + 1
        this, previous = (format_stamp(int(trajectory.stamps_ns[k])) for k in (row, row - 1))
        raise TrajectoryFileError(
            f"{target}: stamps must increase strictly; pose {row} at {this} follows {previous}"
        )


def parse_tum(text: str, source: str = "<string>") -> TumTrajectory:
    """Parse TUM text; errors name ``source`` and the 1-based line."""
    stamps: list[int] = []
    rows: list[list[float]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields = line.split()
        if len(fields) != 8:
            raise TrajectoryFileError(
                f"{where}: expected 8 fields 'timestamp tx ty tz qx qy qz qw', got {len(fields)}"
            )
        try:
            stamp = parse_stamp(fields[0])
        except ValueError as exc:
            raise TrajectoryFileError(f"{where}: {exc}") from None
        try:
            values = [float(f) for f in fields[1:]]
        except ValueError:
            raise TrajectoryFileError(f"{where}: pose values must be numbers, got {fields[1:]}") from None
        if not np.all(np.isfinite(values)):
            raise TrajectoryFileError(f"{where}: pose values must be finite, got {fields[1:]}")
        norm = float(np.linalg.norm(values[3:]))
        if abs(norm - 1.0) > 1e-3:
            raise TrajectoryFileError(
                f"{where}: quaternion {fields[4:]} is not unit length (norm {norm:.6g})"
            )
        if stamps and stamp <= stamps[-1]:
            raise TrajectoryFileError(
                f"{where}: timestamp {fields[0]} does not increase (previous {format_stamp(stamps[-1])})"
            )
        stamps.append(stamp)
        rows.append(values)
    table = np.array(rows, dtype=float).reshape(-1, 7)
    return TumTrajectory(np.array(stamps, dtype=np.int64), table[:, :3], table[:, 3:])


def read_tum(path: str | Path) -> TumTrajectory:
    """Read and validate a TUM file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrajectoryFileError(f"{p}: trajectory file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajectoryFileError(f"{p}: cannot read trajectory file: {exc}") from None
    return parse_tum(text, str(p))


def estimates_to_tum(estimates: Sequence[PoseEstimate], planar: bool = False) -> TumTrajectory:
    """Estimates as a TUM trajectory; ``planar`` zeroes z (for 2D comparisons with evo's 3D APE)."""
    trajectory = TumTrajectory.from_estimates(estimates)
    if planar:
        return planar_trajectory(trajectory.stamps_ns, trajectory.positions[:, :2], _yaw_of(trajectory))
    return trajectory


def planar_trajectory(stamps_ns: npt.ArrayLike, xy: npt.ArrayLike, yaw: npt.ArrayLike) -> TumTrajectory:
    """A TUM trajectory with z = 0 and pure-yaw orientations from planar poses."""
    xy_arr = np.asarray(xy, dtype=float).reshape(-1, 2)
    half = 0.5 * np.asarray(yaw, dtype=float).reshape(-1)
    quats = np.stack([np.zeros_like(half), np.zeros_like(half), np.sin(half), np.cos(half)], axis=1)
    positions = np.concatenate([xy_arr, np.zeros((xy_arr.shape[0], 1))], axis=1)
    return TumTrajectory(np.asarray(stamps_ns, dtype=np.int64), positions, quats)


def _yaw_of(trajectory: TumTrajectory) -> np.ndarray:
    x, y, z, w = trajectory.quaternions_xyzw.T
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
