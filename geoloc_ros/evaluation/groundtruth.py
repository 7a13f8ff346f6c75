"""RTK ground truth in ``map`` and its interpolation to estimate stamps.

Ground truth arrives as NavSatFix-like samples (stamp, latitude, longitude, altitude), optionally
with an ENU orientation quaternion (``/rtk/imu``) either on the same samples or as a separate
stamped series. Positions are converted to ENU at the map origin (:mod:`geoloc_ros.geo.enu`).

Interpolation to a query stamp is linear in position and shortest-arc in heading. Heading comes
from the orientation when given, otherwise from the trajectory tangent (direction of travel:
backwards when reversing; undefined, NaN, below ``tangent_min_speed_mps``). A query before the
first sample, after the last, or between two samples more than ``max_gap_s`` apart is flagged,
never extrapolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from geoloc_ros.evaluation.errors import EvaluationError
from geoloc_ros.geo.enu import GeoOrigin, geodetic_to_enu
from geoloc_ros.geo.errors import GeodesyError
from geoloc_ros.geo.heading import wrap_angle

if TYPE_CHECKING:
    from geoloc_ros.io.drive import DriveBag

_NS = 1_000_000_000


class GroundTruthStatus(IntEnum):
    """Why a query stamp has (or has no) ground truth."""

    VALID = 0
    BEFORE_START = 1
    AFTER_END = 2
    IN_GAP = 3


@dataclass(frozen=True)
class GroundTruthSample:
    """One RTK fix; ``orientation_xyzw`` is the vehicle's ENU orientation at the same stamp, if known."""

    stamp_ns: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    orientation_xyzw: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class GroundTruthAtStamps:
    """Ground truth interpolated at query stamps. ``yaw`` is NaN where heading is unknown."""

    stamps_ns: np.ndarray
    positions: np.ndarray
    yaw: np.ndarray
    status: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.status == GroundTruthStatus.VALID

    def count(self, status: GroundTruthStatus) -> int:
        return int(np.count_nonzero(self.status == status))


def _check_stamps(stamps: np.ndarray, what: str) -> None:
    if stamps.ndim != 1 or stamps.size < 2:
        raise EvaluationError(f"{what} needs at least 2 samples, got {stamps.size}")
    steps = np.diff(stamps)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise EvaluationError(
            f"{what} stamps must increase strictly: sample {i} at {int(stamps[i])} ns "
            f"follows {int(stamps[i - 1])} ns"
        )


def _bracket(
    sample_stamps: np.ndarray, query: np.ndarray, max_gap_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left sample index, interpolation weight and status of each query stamp."""
    last = sample_stamps.size - 1
    left = np.searchsorted(sample_stamps, query, side="right") - 1
    status = np.full(query.shape, GroundTruthStatus.VALID, dtype=np.int8)
    status[left < 0] = GroundTruthStatus.BEFORE_START
    after = query > sample_stamps[-1]
    status[after] = GroundTruthStatus.AFTER_END
    # A query exactly on the last sample interpolates on the last interval with weight 1.
    left = np.clip(left, 0, last - 1)
    span = sample_stamps[left + 1] - sample_stamps[left]
    inside = status == GroundTruthStatus.VALID
    # A query exactly on a sample is valid even when a gap starts or ends there.
    on_sample = (query == sample_stamps[left]) | (query == sample_stamps[left + 1])
    status[inside & (span > max_gap_ns) & ~on_sample] = GroundTruthStatus.IN_GAP
    weight = (query - sample_stamps[left]).astype(float) / span.astype(float)
    return left, np.clip(weight, 0.0, 1.0), status


def _interpolate_angle(left: np.ndarray, weight: np.ndarray, angles: np.ndarray) -> np.ndarray:
    a0, a1 = angles[left], angles[left + 1]
    return wrap_angle(a0 + weight * wrap_angle(a1 - a0))


def tangent_heading(
    stamps_ns: np.ndarray,
    positions_xy: np.ndarray,
    window_s: float = 0.5,
    min_speed_mps: float = 1.0,
    max_gap_s: float = 1.0,
) -> np.ndarray:
    """ENU yaw of the direction of travel at each sample (central difference over ``window_s``).

    Differences stay within the stretch of samples between two gaps (one-sided at its ends).
    NaN where the vehicle moves slower than ``min_speed_mps`` or a stretch has a single sample.
    """
    if window_s <= 0.0:
        raise EvaluationError(f"tangent heading window must be > 0 s, got {window_s}")
    n = stamps_ns.size
    half = round(0.5 * window_s * _NS)
    gap_after = np.diff(stamps_ns) > round(max_gap_s * _NS)
    stretch = np.concatenate([[0], np.cumsum(gap_after)])  # stretch index of each sample
    first_of_stretch = np.searchsorted(stretch, stretch, side="left")
    last_of_stretch = np.searchsorted(stretch, stretch, side="right") - 1
    # First sample at least half a window ahead and last one half a window behind, kept inside
    # the sample's stretch.
    ahead = np.minimum(np.searchsorted(stamps_ns, stamps_ns + half, side="left"), n - 1)
    behind = np.maximum(np.searchsorted(stamps_ns, stamps_ns - half, side="right") - 1, 0)
    ahead = np.minimum(ahead, last_of_stretch)
    behind = np.maximum(behind, first_of_stretch)
    chord = positions_xy[ahead] - positions_xy[behind]
    duration = (stamps_ns[ahead] - stamps_ns[behind]) * 1e-9
    yaw = np.arctan2(chord[:, 1], chord[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.hypot(chord[:, 0], chord[:, 1]) / duration
    yaw[~(speed >= min_speed_mps)] = np.nan  # also NaN for single-sample stretches (0 / 0)
    return yaw


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth trajectory in ``map``: ENU positions at RTK stamps, heading series.

    ``heading_source`` is ``"orientation"`` (RTK IMU) or ``"tangent"`` (direction of travel).
    """

    stamps_ns: np.ndarray
    positions: np.ndarray
    yaw_stamps_ns: np.ndarray
    yaw: np.ndarray
    heading_source: str
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        stamps = np.asarray(self.stamps_ns, dtype=np.int64).reshape(-1)
        positions = np.asarray(self.positions, dtype=float).reshape(-1, 3)
        yaw_stamps = np.asarray(self.yaw_stamps_ns, dtype=np.int64).reshape(-1)
        yaw = np.asarray(self.yaw, dtype=float).reshape(-1)
        _check_stamps(stamps, "ground truth")
        if positions.shape[0] != stamps.size:
            raise EvaluationError(f"ground truth has {stamps.size} stamps but {positions.shape[0]} positions")
        if not np.all(np.isfinite(positions)):
            raise EvaluationError("ground truth positions must be finite")
        _check_stamps(yaw_stamps, "ground-truth heading")
        if yaw.size != yaw_stamps.size:
            raise EvaluationError(
                f"ground truth has {yaw_stamps.size} heading stamps but {yaw.size} headings"
            )
        if self.max_gap_s <= 0:
            raise EvaluationError(f"ground truth max_gap_s must be > 0, got {self.max_gap_s}")
        object.__setattr__(self, "stamps_ns", stamps)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "yaw_stamps_ns", yaw_stamps)
        object.__setattr__(self, "yaw", yaw)

    def __len__(self) -> int:
        return int(self.stamps_ns.size)

    @property
    def span_ns(self) -> tuple[int, int]:
        return int(self.stamps_ns[0]), int(self.stamps_ns[-1])

    @classmethod
    def from_enu(
        cls,
        stamps_ns: npt.ArrayLike,
        positions: npt.ArrayLike,
        *,
        yaw: npt.ArrayLike | None = None,
        yaw_stamps_ns: npt.ArrayLike | None = None,
        max_gap_s: float = 1.0,
        tangent_window_s: float = 0.5,
        tangent_min_speed_mps: float = 1.0,
    ) -> GroundTruth:
        """From ENU positions ``(N, 2)`` or ``(N, 3)``; heading from ``yaw`` or else the tangent."""
        stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        pos = np.asarray(positions, dtype=float)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3):
            raise EvaluationError(f"ground-truth positions must be (N, 2) or (N, 3), got shape {pos.shape}")
        if pos.shape[1] == 2:
            pos = np.concatenate([pos, np.zeros((pos.shape[0], 1))], axis=1)
        if yaw is not None:
            yaw_arr = np.asarray(yaw, dtype=float).reshape(-1)
            yaw_stamps = stamps if yaw_stamps_ns is None else np.asarray(yaw_stamps_ns, dtype=np.int64)
            return cls(stamps, pos, yaw_stamps, wrap_angle(yaw_arr), "orientation", max_gap_s)
        _check_stamps(stamps, "ground truth")
        tangent = tangent_heading(stamps, pos[:, :2], tangent_window_s, tangent_min_speed_mps, max_gap_s)
        return cls(stamps, pos, stamps, tangent, "tangent", max_gap_s)

    @classmethod
    def from_geodetic(
        cls,
        stamps_ns: npt.ArrayLike,
        latitude_deg: npt.ArrayLike,
        longitude_deg: npt.ArrayLike,
        altitude_m: npt.ArrayLike,
        *,
        origin: GeoOrigin,
        orientation_stamps_ns: npt.ArrayLike | None = None,
        orientations_xyzw: npt.ArrayLike | None = None,
        max_gap_s: float = 1.0,
        tangent_window_s: float = 0.5,
        tangent_min_speed_mps: float = 1.0,
    ) -> GroundTruth:
        """From RTK fixes (arrays) and, optionally, an ENU orientation series (``/rtk/imu``)."""
        try:
            enu = geodetic_to_enu(latitude_deg, longitude_deg, altitude_m, origin)
        except GeodesyError as exc:
            raise EvaluationError(f"ground-truth fix: {exc}") from None
        yaw = None
        if orientations_xyzw is not None:
            q = np.asarray(orientations_xyzw, dtype=float).reshape(-1, 4)
            if not np.all(np.isfinite(q)) or np.any(np.linalg.norm(q, axis=1) < 1e-9):
                raise EvaluationError("ground-truth orientations must be finite, non-zero quaternions")
            x, y, z, w = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
            yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        return cls.from_enu(
            stamps_ns,
            enu.reshape(-1, 3),
            yaw=yaw,
            yaw_stamps_ns=orientation_stamps_ns,
            max_gap_s=max_gap_s,
            tangent_window_s=tangent_window_s,
            tangent_min_speed_mps=tangent_min_speed_mps,
        )

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[GroundTruthSample],
        origin: GeoOrigin,
        *,
        max_gap_s: float = 1.0,
        tangent_window_s: float = 0.5,
        tangent_min_speed_mps: float = 1.0,
    ) -> GroundTruth:
        """From RTK samples in stamp order; heading from the samples carrying an orientation, if any."""
        if not samples:
            raise EvaluationError("ground truth has no samples")
        oriented = [(s.stamp_ns, s.orientation_xyzw) for s in samples if s.orientation_xyzw is not None]
        return cls.from_geodetic(
            [s.stamp_ns for s in samples],
            [s.latitude_deg for s in samples],
            [s.longitude_deg for s in samples],
            [s.altitude_m for s in samples],
            origin=origin,
            orientation_stamps_ns=[stamp for stamp, _ in oriented] if oriented else None,
            orientations_xyzw=np.array([q for _, q in oriented], dtype=float) if oriented else None,
            max_gap_s=max_gap_s,
            tangent_window_s=tangent_window_s,
            tangent_min_speed_mps=tangent_min_speed_mps,
        )

    def at(self, stamps_ns: npt.ArrayLike) -> GroundTruthAtStamps:
        """Ground truth at each query stamp; see :class:`GroundTruthStatus` for flagged stamps."""
        query = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        max_gap_ns = round(self.max_gap_s * _NS)
        left, weight, status = _bracket(self.stamps_ns, query, max_gap_ns)
        p0, p1 = self.positions[left], self.positions[left + 1]
        positions = p0 + weight[:, None] * (p1 - p0)
        valid = status == GroundTruthStatus.VALID
        positions[~valid] = np.nan
        yaw_left, yaw_weight, yaw_status = _bracket(self.yaw_stamps_ns, query, max_gap_ns)
        yaw = _interpolate_angle(yaw_left, yaw_weight, self.yaw)
        yaw[~valid | (yaw_status != GroundTruthStatus.VALID)] = np.nan
        return GroundTruthAtStamps(query, positions, yaw, status)


def drive_ground_truth(drive: DriveBag, origin: GeoOrigin) -> GroundTruth:
    """A drive's RTK fixes (``/rtk/fix``) and, when recorded, RTK orientation (``/rtk/imu``) in ``map``."""
    rtk = drive.rtk()
    if len(rtk) == 0:
        raise EvaluationError(f"{drive.bag_path}: no RTK fix with a solution: nothing to evaluate against")
    orientation = drive.rtk_orientation()
    return GroundTruth.from_geodetic(
        rtk.stamps_ns,
        rtk.latitude_deg,
        rtk.longitude_deg,
        rtk.altitude_m,
        origin=origin,
        orientation_stamps_ns=None if orientation is None else orientation.stamps_ns,
        orientations_xyzw=None if orientation is None else orientation.quaternions_xyzw,
    )
