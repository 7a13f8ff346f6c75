"""Planar pose fusion: an extended Kalman filter over ``(x, y, yaw, v, yaw_rate)`` in ``map``.

Design (robot_localization users will recognise the conventions):

- **State and model**: ENU position (m), ENU yaw (rad, wrapped to [-pi, pi)), forward speed (m/s)
  and yaw rate (rad/s) under a constant-turn-rate-and-velocity model
  (:mod:`geoloc_ros.fusion.motion_model`). Output covariances use the 6x6
  ``PoseWithCovariance`` layout; z, roll and pitch are not estimated and get
  :data:`~geoloc_ros.geometry.covariance.UNKNOWN_VARIANCE`.
- **Measurements**: absolute poses (:class:`~geoloc_ros.geometry.estimate.PoseEstimate` from BoVW,
  PoseNet, temporal PoseNet), positions (consumer GPS) and speed / yaw rate (odometry, IMU). Each
  source has its own covariance scale and inflation. A published variance at or above
  ``ignore_variance`` means "not measured" and that dimension is left out of the update.
- **Gating**: the normalized innovation squared is compared with a chi-square quantile
  (``gate_probability``, dof = measured dimensions); heading innovations are wrapped.
- **Time**: message stamps (``stamp_ns``) drive the filter, never arrival time, so replay and live
  runs agree. Measurements are kept for ``history_s``; one that arrives late (BoVW for frame t
  after PoseNet for t+1) is inserted in stamp order and every later one is re-applied from the
  state before it, so the result does not depend on arrival order. Ties on a stamp are ordered by
  source name, then arrival. A measurement older than the history is dropped ("too_old").
  Implausible stamps (far in the future or the past of the filter clock, and live of the node
  clock given as ``clock``) are rejected and never become the newest time; only a confirmed time
  jump (a bag loop) resets the filter: :mod:`geoloc_ros.fusion.timeline`.
- **Initialization**: from the first absolute pose whose uncertainty is within ``init`` limits.
  Position-only sources (GPS) give no heading: the filter then initializes from two fixes at least
  ``course_baseline_m`` apart, with the course over ground as heading (assumes forward driving; a
  later precise pose corrects it, or re-initializes the filter through the divergence rule).
- **Divergence**: a source with ``reinit_after_rejections = N`` whose N consecutive
  initialization-grade poses all fail the gate re-initializes the filter from the last one.
- **Bad input** (NaN, non-PSD covariance, another frame, unknown source) is rejected with a counted
  reason and never raises.

Counters in :class:`FusionDiagnostics` describe each measurement's final fate: when a late
measurement changes the outcome of later ones on re-application, their counts are corrected.

This module is the filter's front: measurement intake, source configs and the public API. Its
jobs live beside it: the EKF step in :mod:`geoloc_ros.fusion.ekf`, initialization in
:mod:`geoloc_ros.fusion.initialization`, the out-of-order history in
:mod:`geoloc_ros.fusion.history`, outcome counters in :mod:`geoloc_ros.fusion.outcomes` and time
sanity in :mod:`geoloc_ros.fusion.timeline`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from geoloc_ros.fusion.config import FusionConfig, MotionSourceConfig, PoseSourceConfig, PositionSourceConfig
from geoloc_ros.fusion.ekf import FilterState, PlanarEkf
from geoloc_ros.fusion.errors import FusionError, InvalidMeasurementError
from geoloc_ros.fusion.history import MeasurementHistory
from geoloc_ros.fusion.initialization import Initializer
from geoloc_ros.fusion.measurements import (
    STATE_SPEED,
    STATE_X,
    STATE_Y,
    STATE_YAW,
    STATE_YAW_RATE,
    GpsFix,
    MotionMeasurement,
    Observation,
    PositionMeasurement,
    RejectReason,
    observation_from_motion,
    observation_from_pose,
    observation_from_position,
    position_from_gps_fix,
)
from geoloc_ros.fusion.motion_model import predict
from geoloc_ros.fusion.outcomes import (
    REINIT_DIVERGENCE,
    STATUS_ACCEPTED,
    STATUS_INITIALIZED,
    STATUS_REJECTED,
    FusionDiagnostics,
    Outcome,
    OutcomeCounters,
    SourceCounters,
    UpdateResult,
)
from geoloc_ros.fusion.timeline import FilterClock
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.covariance import PLANAR_INDICES, UNKNOWN_VARIANCE
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D

__all__ = [
    "REINIT_DIVERGENCE",
    "RESET_REQUESTED",
    "STATUS_ACCEPTED",
    "STATUS_INITIALIZED",
    "STATUS_REJECTED",
    "FusionDiagnostics",
    "Measurement",
    "PlanarFusionFilter",
    "SourceCounters",
    "UpdateResult",
]

logger = logging.getLogger(__name__)

RESET_REQUESTED = "requested"

Measurement = PoseEstimate | PositionMeasurement | MotionMeasurement | GpsFix
_ConfigT = TypeVar("_ConfigT", PoseSourceConfig, PositionSourceConfig, MotionSourceConfig)


class PlanarFusionFilter:
    """EKF fusing absolute poses, GPS positions and odometry into a planar pose with covariance.

    Feed measurements with :meth:`add` (or the typed ``add_*`` methods) in any order within
    ``history_s``; read the fused pose at any stamp with :meth:`estimate_at`.
    """

    def __init__(
        self,
        config: FusionConfig | None = None,
        origin: GeoOrigin | None = None,
        clock: Callable[[], int | None] | None = None,
    ) -> None:
        """``clock`` (live only) returns the node clock in ns (``None`` or 0: unknown); stamps
        implausible for it are rejected (see :mod:`geoloc_ros.fusion.timeline`)."""
        self.config = config if config is not None else FusionConfig()
        self.origin = origin
        self._clock = FilterClock(self.config, clock)
        self._ekf = PlanarEkf(self.config)
        self._initializer = Initializer(self._ekf)
        self._history = MeasurementHistory()
        self._outcomes = OutcomeCounters()
        self._warned_sources: set[str] = set()
        self._resets: Counter[str] = Counter()
        self._sequence = 0
        self._clear()

    # ------------------------------------------------------------------ public API

    def add(self, measurement: Measurement) -> UpdateResult:
        """Add any supported measurement (dispatches on its type)."""
        if isinstance(measurement, PoseEstimate):
            return self.add_pose(measurement)
        if isinstance(measurement, GpsFix):
            return self.add_gps_fix(measurement)
        if isinstance(measurement, PositionMeasurement):
            return self.add_position(measurement)
        if isinstance(measurement, MotionMeasurement):
            return self.add_motion(measurement)
        raise FusionError(f"cannot fuse a {type(measurement).__name__}; expected {Measurement}")

    def add_pose(self, estimate: PoseEstimate) -> UpdateResult:
        """Fuse an absolute pose (x, y, yaw and their covariance) from a localizer."""
        source, stamp = estimate.source, estimate.stamp_ns
        cfg = self._source_config(source, self.config.pose_sources, stamp)
        if isinstance(cfg, UpdateResult):
            return cfg
        try:
            obs = observation_from_pose(estimate, self.config.map_frame)
            if not cfg.use_yaw:
                obs = obs.restricted([0, 1])
            obs = self._ekf.condition(obs, cfg)
        except InvalidMeasurementError as exc:
            return self._reject_now(source, stamp, exc.reason, str(exc))
        return self._insert(obs)

    def add_position(self, measurement: PositionMeasurement) -> UpdateResult:
        """Fuse a horizontal position (consumer GPS already in ``map``)."""
        cfg = self._source_config(measurement.source, self.config.position_sources, measurement.stamp_ns)
        if isinstance(cfg, UpdateResult):
            return cfg
        return self._add_position(measurement, cfg)

    def add_gps_fix(self, fix: GpsFix) -> UpdateResult:
        """Fuse a NavSatFix-like fix; needs the map ``origin`` given at construction."""
        if self.origin is None:
            raise FusionError("add_gps_fix needs the map origin: construct PlanarFusionFilter(origin=...)")
        cfg = self._source_config(fix.source, self.config.position_sources, fix.stamp_ns)
        if isinstance(cfg, UpdateResult):
            return cfg
        try:
            measurement = position_from_gps_fix(fix, self.origin, cfg.unknown_covariance_std_m)
        except InvalidMeasurementError as exc:
            return self._reject_now(fix.source, fix.stamp_ns, exc.reason, str(exc))
        return self._add_position(measurement, cfg)

    def add_motion(self, measurement: MotionMeasurement) -> UpdateResult:
        """Fuse forward speed and/or yaw rate (wheel odometry, IMU)."""
        source, stamp = measurement.source, measurement.stamp_ns
        cfg = self._source_config(source, self.config.motion_sources, stamp)
        if isinstance(cfg, UpdateResult):
            return cfg
        try:
            obs = self._ekf.condition(observation_from_motion(measurement), cfg)
        except InvalidMeasurementError as exc:
            return self._reject_now(source, stamp, exc.reason, str(exc))
        return self._insert(obs)

    def estimate_at(self, stamp_ns: int) -> PoseEstimate | None:
        """The fused pose at ``stamp_ns`` from the measurements stamped at or before it.

        ``None`` before initialization, for stamps older than the history window, and more than
        ``max_extrapolation_s`` after the last measurement used.
        """
        stamp_ns = int(stamp_ns)
        state = self._history.state_for(stamp_ns)
        if state is None or state.mean is None or state.covariance is None:
            return None
        dt = (stamp_ns - state.stamp_ns) * 1e-9
        if dt > self.config.max_extrapolation_s:
            return None
        mean, cov = predict(state.mean, state.covariance, dt, self.config.process_noise, self._ekf.biases)
        up = state.up_m if math.isfinite(state.up_m) else 0.0
        c, s = math.cos(mean[STATE_YAW]), math.sin(mean[STATE_YAW])
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        # The filter's covariance is symmetric PSD by construction (Joseph form); embed it as is.
        cov6 = np.diag([0.0, 0.0, UNKNOWN_VARIANCE, UNKNOWN_VARIANCE, UNKNOWN_VARIANCE, 0.0])
        planar = np.array(PLANAR_INDICES)
        cov6[np.ix_(planar, planar)] = cov[:3, :3]
        return PoseEstimate(
            stamp_ns,
            Pose3D(rotation, np.array([mean[STATE_X], mean[STATE_Y], up])),
            cov6,
            source=self.config.output_source,
            frame_id=self.config.map_frame,
            info={
                "speed_mps": float(mean[STATE_SPEED]),
                "speed_std_mps": float(math.sqrt(cov[STATE_SPEED, STATE_SPEED])),
                "yaw_rate_rps": float(mean[STATE_YAW_RATE]),
                "yaw_rate_std_rps": float(math.sqrt(cov[STATE_YAW_RATE, STATE_YAW_RATE])),
                "extrapolated_s": dt,
            },
        )

    def reset(self, reason: str = RESET_REQUESTED) -> None:
        """Forget the state and the history (counters are kept); the next fix re-initializes."""
        self._resets[reason] += 1
        logger.warning("fusion filter reset (%s) at newest stamp %s ns", reason, self._clock.newest_ns)
        self._clear()

    @property
    def initialized(self) -> bool:
        return self._history.latest_state().mean is not None

    @property
    def state(self) -> tuple[int, np.ndarray, np.ndarray] | None:
        """``(stamp_ns, mean, covariance)`` after the newest measurement, or None.

        The first 5 components are ``(x, y, yaw, v, yaw_rate)``; the rest are the bias states of
        sources with ``error_correlation_s > 0`` (``PlanarEkf.bias_slots``).
        """
        s = self._history.latest_state()
        if s.mean is None or s.covariance is None:
            return None
        return s.stamp_ns, s.mean.copy(), s.covariance.copy()

    @property
    def diagnostics(self) -> FusionDiagnostics:
        return FusionDiagnostics(
            initialized=self.initialized,
            newest_stamp_ns=self._clock.newest_ns,
            resets=sum(self._resets.values()),
            reset_reasons=dict(self._resets),
            reinitializations=self._outcomes.reinitializations,
            buffered=len(self._history),
            sources=self._outcomes.snapshot(),
        )

    # ------------------------------------------------------------------ bookkeeping

    def _clear(self) -> None:
        self._history.clear()
        self._clock.clear()

    def _source_config(
        self, source: str, table: dict[str, _ConfigT], stamp_ns: int
    ) -> _ConfigT | UpdateResult:
        self._outcomes.source(source).received += 1
        cfg = table.get(source)
        if cfg is None:
            if source not in self._warned_sources:
                self._warned_sources.add(source)
                logger.warning(
                    "measurements from unknown source '%s' are rejected; configured: %s",
                    source,
                    sorted(table),
                )
            return self._reject_now(source, stamp_ns, RejectReason.UNKNOWN_SOURCE.value, "")
        if not cfg.enabled:
            return self._reject_now(source, stamp_ns, RejectReason.DISABLED.value, "")
        return cfg

    def _reject_now(self, source: str, stamp_ns: int, reason: str, detail: str) -> UpdateResult:
        """Count a measurement rejected before entering the history."""
        self._outcomes.source(source).rejected[reason] += 1
        if detail:
            logger.debug("rejected %s: %s", source, detail)
        return UpdateResult(source, stamp_ns, STATUS_REJECTED, reason, detail=detail)

    def _add_position(self, measurement: PositionMeasurement, cfg: PositionSourceConfig) -> UpdateResult:
        try:
            obs = self._ekf.condition(observation_from_position(measurement), cfg)
        except InvalidMeasurementError as exc:
            return self._reject_now(measurement.source, measurement.stamp_ns, exc.reason, str(exc))
        return self._insert(obs)

    # ------------------------------------------------------------------ time handling and replay

    def _insert(self, obs: Observation) -> UpdateResult:
        stamp = obs.stamp_ns
        verdict = self._clock.check(obs.source, stamp)
        if verdict.reject is not None:
            return self._reject_now(obs.source, stamp, verdict.reject, verdict.detail)
        reset = verdict.reset
        if reset is not None:
            self.reset(reset)
        self._sequence += 1
        key = (stamp, obs.source, self._sequence)
        index = self._history.insert(key, obs, self._apply, self._outcomes)
        outcome = self._history.entries[index].outcome
        replayed = len(self._history) - index - 1
        result = UpdateResult(
            obs.source, stamp, outcome.status, outcome.reason, outcome.nis, reset, replayed, outcome.detail
        )
        self._clock.adopt(obs.source, stamp)
        assert self._clock.newest_ns is not None
        self._history.prune(self._clock.newest_ns - round(self.config.history_s * 1e9))
        return result

    def _apply(self, state: FilterState, obs: Observation) -> tuple[FilterState, Outcome]:
        """Process one observation on ``state``; returns the new state and the outcome."""
        if state.mean is None:
            return self._initializer.try_initialize(state, obs)
        new, outcome = self._ekf.update(state, obs)
        if outcome.status == STATUS_REJECTED and outcome.reason == RejectReason.GATE.value:
            return self._initializer.after_gate_rejection(new, obs, outcome)
        return new, outcome
