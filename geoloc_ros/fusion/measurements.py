"""Measurements the fusion filter accepts, and their validation into linear observations.

The filter state is ``(x, y, yaw, v, yaw_rate)`` in ``map`` (ENU metres, ENU yaw in radians,
m/s, rad/s). Every measurement is a direct observation of some of these components, so each one
becomes an :class:`Observation`: the observed state indices, the values and their covariance.
Validation failures raise :class:`~geoloc_ros.fusion.errors.InvalidMeasurementError` carrying a
:class:`RejectReason`, which the filter counts instead of crashing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import numpy.typing as npt

from geoloc_ros.fusion.errors import InvalidMeasurementError
from geoloc_ros.geo.enu import GeoOrigin, geodetic_to_enu
from geoloc_ros.geo.errors import GeodesyError
from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE, CovarianceError, validate_covariance
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.geometry.sources import SOURCE_GPS, SOURCE_ODOMETRY

# Indices of the filter state vector.
STATE_X, STATE_Y, STATE_YAW, STATE_SPEED, STATE_YAW_RATE = range(5)
STATE_DIM = 5

# sensor_msgs/NavSatStatus and NavSatFix constants (kept here so the core needs no ROS import).
NAVSAT_STATUS_NO_FIX = -1
NAVSAT_COVARIANCE_TYPE_UNKNOWN = 0


class RejectReason(str, Enum):
    """Why a measurement was not fused (the keys of the per-source rejection counters)."""

    NON_FINITE = "non_finite"
    INVALID_COVARIANCE = "invalid_covariance"
    WRONG_FRAME = "wrong_frame"
    NO_FIX = "no_fix"
    UNKNOWN_SOURCE = "unknown_source"
    DISABLED = "disabled"
    NOTHING_MEASURED = "nothing_measured"
    NOT_INITIALIZED = "not_initialized"
    TOO_OLD = "too_old"
    FUTURE = "future"
    GATE = "gate"
    DECIMATED = "decimated"


@dataclass(frozen=True)
class PositionMeasurement:
    """A horizontal position fix in ``map`` (ENU metres) with its 2x2 covariance (m^2)."""

    stamp_ns: int
    position: np.ndarray
    covariance: np.ndarray
    source: str = SOURCE_GPS
    # Height above the map origin, carried into the fused estimate's z (not filtered).
    up_m: float = float("nan")

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))
        object.__setattr__(self, "position", np.asarray(self.position, dtype=float).reshape(-1))
        object.__setattr__(self, "covariance", np.asarray(self.covariance, dtype=float))


@dataclass(frozen=True)
class MotionMeasurement:
    """Forward speed (m/s) and/or yaw rate (rad/s, counter-clockwise) with their variances."""

    stamp_ns: int
    source: str = SOURCE_ODOMETRY
    speed_mps: float | None = None
    speed_variance: float = 0.0
    yaw_rate_rps: float | None = None
    yaw_rate_variance: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))


@dataclass(frozen=True)
class GpsFix:
    """The fields of a ``sensor_msgs/NavSatFix`` the filter uses (duck-typed, no ROS import).

    ``position_covariance`` is the message's 9 values, row-major over (east, north, up) in m^2.
    """

    stamp_ns: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    position_covariance: npt.ArrayLike = field(default_factory=lambda: np.zeros(9))
    covariance_type: int = NAVSAT_COVARIANCE_TYPE_UNKNOWN
    status: int = 0
    source: str = SOURCE_GPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))


@dataclass(frozen=True)
class Observation:
    """A validated direct observation ``values ≈ state[indices]`` with noise ``covariance``."""

    stamp_ns: int
    source: str
    indices: tuple[int, ...]
    values: np.ndarray
    covariance: np.ndarray
    # Height carried through to the output pose (NaN: none).
    up_m: float = float("nan")

    def restricted(self, keep: npt.ArrayLike) -> Observation:
        """The same observation over a subset of its dimensions (boolean mask or positions)."""
        k = np.asarray(keep)
        if k.dtype == bool:
            k = np.flatnonzero(k)
        return Observation(
            self.stamp_ns,
            self.source,
            tuple(self.indices[i] for i in k),
            self.values[k],
            self.covariance[np.ix_(k, k)],
            self.up_m,
        )


def _checked_covariance(cov: npt.ArrayLike, dim: int, what: str) -> np.ndarray:
    try:
        return validate_covariance(cov, dim, what)
    except CovarianceError as exc:
        raise InvalidMeasurementError(RejectReason.INVALID_COVARIANCE.value, str(exc)) from None


def _require_finite(values: npt.ArrayLike, what: str) -> None:
    if not np.all(np.isfinite(np.asarray(values, dtype=float))):
        raise InvalidMeasurementError(RejectReason.NON_FINITE.value, f"{what} has NaN or infinite values")


def observation_from_pose(estimate: PoseEstimate, map_frame: str) -> Observation:
    """``(x, y, yaw)`` observation of a :class:`PoseEstimate`; rejects other frames, NaN, non-PSD."""
    what = f"pose from '{estimate.source}' at {estimate.stamp_ns} ns"
    if estimate.frame_id != map_frame:
        raise InvalidMeasurementError(
            RejectReason.WRONG_FRAME.value,
            f"{what} is in frame '{estimate.frame_id}', expected '{map_frame}'",
        )
    _require_finite(estimate.pose.translation, f"{what}: position")
    _require_finite(estimate.pose.rotation, f"{what}: rotation")
    cov6 = np.asarray(estimate.covariance, dtype=float)
    if not np.all(np.isfinite(cov6)):
        raise InvalidMeasurementError(
            RejectReason.INVALID_COVARIANCE.value, f"{what}: covariance contains NaN or infinite values"
        )
    # Symmetry and positive semi-definiteness are checked on the block the filter uses.
    idx = np.array([0, 1, 5])  # x, y, rot z of the 6x6 layout
    planar = _checked_covariance(cov6[np.ix_(idx, idx)], 3, f"{what}: (x, y, yaw) covariance")
    if np.any(np.diag(planar) <= 0.0):
        # A zero variance is trusted exactly: the fused covariance collapses and every later pose fails
        # the gate. An all-zero covariance is also what a message whose covariance was never filled holds.
        raise InvalidMeasurementError(
            RejectReason.INVALID_COVARIANCE.value,
            f"{what}: (x, y, yaw) variances {np.diag(planar).tolist()} must be positive",
        )
    t = estimate.pose.translation
    r = estimate.pose.rotation
    # Z-Y-X yaw straight from the matrix (scipy's full Euler decomposition is 20x slower).
    yaw = math.atan2(r[1, 0], r[0, 0])
    return Observation(
        estimate.stamp_ns,
        estimate.source,
        (STATE_X, STATE_Y, STATE_YAW),
        np.array([t[0], t[1], yaw]),
        planar,
        float(t[2]),
    )


def observation_from_position(measurement: PositionMeasurement) -> Observation:
    what = f"position from '{measurement.source}' at {measurement.stamp_ns} ns"
    if measurement.position.shape != (2,):
        raise InvalidMeasurementError(
            RejectReason.NON_FINITE.value, f"{what} must have 2 components, got {measurement.position.shape}"
        )
    _require_finite(measurement.position, what)
    cov = _checked_covariance(measurement.covariance, 2, f"{what}: covariance")
    return Observation(
        measurement.stamp_ns,
        measurement.source,
        (STATE_X, STATE_Y),
        measurement.position.copy(),
        cov,
        measurement.up_m,
    )


def observation_from_motion(measurement: MotionMeasurement) -> Observation:
    what = f"motion from '{measurement.source}' at {measurement.stamp_ns} ns"
    indices: list[int] = []
    values: list[float] = []
    variances: list[float] = []
    for index, value, variance, name in (
        (STATE_SPEED, measurement.speed_mps, measurement.speed_variance, "speed"),
        (STATE_YAW_RATE, measurement.yaw_rate_rps, measurement.yaw_rate_variance, "yaw rate"),
    ):
        if value is None:
            continue
        _require_finite([value], f"{what}: {name}")
        if not np.isfinite(variance) or variance < 0.0:
            raise InvalidMeasurementError(
                RejectReason.INVALID_COVARIANCE.value, f"{what}: {name} variance {variance} is invalid"
            )
        indices.append(index)
        values.append(float(value))
        variances.append(float(variance))
    if not indices:
        raise InvalidMeasurementError(
            RejectReason.NOTHING_MEASURED.value, f"{what} has neither speed nor yaw rate"
        )
    return Observation(
        measurement.stamp_ns, measurement.source, tuple(indices), np.array(values), np.diag(variances)
    )


def position_from_gps_fix(
    fix: GpsFix, origin: GeoOrigin, unknown_covariance_std_m: float = 5.0
) -> PositionMeasurement:
    """Convert a NavSatFix-like fix to a ``map`` (ENU at ``origin``) position measurement.

    The east/north block of ``position_covariance`` is used; a fix that declares its covariance
    unknown gets ``unknown_covariance_std_m`` on both axes. A fix with status NO_FIX is rejected.
    """
    what = f"GPS fix from '{fix.source}' at {fix.stamp_ns} ns"
    if fix.status <= NAVSAT_STATUS_NO_FIX:
        raise InvalidMeasurementError(RejectReason.NO_FIX.value, f"{what} has status NO_FIX")
    try:
        enu = geodetic_to_enu(fix.latitude_deg, fix.longitude_deg, fix.altitude_m, origin)
    except GeodesyError as exc:
        raise InvalidMeasurementError(RejectReason.NON_FINITE.value, f"{what}: {exc}") from None
    if fix.covariance_type == NAVSAT_COVARIANCE_TYPE_UNKNOWN:
        cov_en = np.eye(2) * unknown_covariance_std_m**2
    else:
        cov_enu = _checked_covariance(fix.position_covariance, 3, f"{what}: position_covariance")
        cov_en = cov_enu[:2, :2]
    return PositionMeasurement(fix.stamp_ns, enu[:2], cov_en, fix.source, float(enu[2]))


def estimate_from_position(measurement: PositionMeasurement, frame_id: str = "map") -> PoseEstimate:
    """A position fix as a :class:`PoseEstimate` (to evaluate consumer GPS like the localizers).

    Heading, roll and pitch get :data:`~geoloc_ros.geometry.covariance.UNKNOWN_VARIANCE` (the
    orientation is the identity and means nothing); z is ``up_m`` (0 when unknown), also unknown.
    """
    cov = np.diag([0.0, 0.0] + [UNKNOWN_VARIANCE] * 4)
    cov[:2, :2] = measurement.covariance
    up = measurement.up_m if math.isfinite(measurement.up_m) else 0.0
    position = np.array([measurement.position[0], measurement.position[1], up], dtype=float)
    return PoseEstimate(measurement.stamp_ns, Pose3D(np.eye(3), position), cov, measurement.source, frame_id)
