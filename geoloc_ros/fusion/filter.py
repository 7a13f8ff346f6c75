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
"""

from __future__ import annotations

import bisect
import copy
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from geoloc_ros.fusion.config import FusionConfig, MotionSourceConfig, PoseSourceConfig, PositionSourceConfig
from geoloc_ros.fusion.errors import FusionError, InvalidMeasurementError
from geoloc_ros.fusion.gating import mahalanobis_gate
from geoloc_ros.fusion.measurements import (
    STATE_DIM,
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
from geoloc_ros.fusion.motion_model import BiasModel, predict
from geoloc_ros.fusion.timeline import FilterClock
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.covariance import PLANAR_INDICES, UNKNOWN_VARIANCE
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D

logger = logging.getLogger(__name__)

STATUS_ACCEPTED = "accepted"
STATUS_INITIALIZED = "initialized"
STATUS_REJECTED = "rejected"

RESET_REQUESTED = "requested"
REINIT_DIVERGENCE = "divergence"

Measurement = PoseEstimate | PositionMeasurement | MotionMeasurement | GpsFix
SourceConfig = PoseSourceConfig | PositionSourceConfig | MotionSourceConfig
_ConfigT = TypeVar("_ConfigT", PoseSourceConfig, PositionSourceConfig, MotionSourceConfig)


@dataclass(frozen=True)
class UpdateResult:
    """What happened to one measurement when it was added.

    ``status`` is ``accepted``, ``initialized`` or ``rejected`` (then ``reason`` is a
    :class:`~geoloc_ros.fusion.measurements.RejectReason` value). ``initialized`` with reason
    ``divergence`` is a re-initialization. ``reset`` names a reset this measurement triggered
    before it was processed. ``replayed`` counts later measurements re-applied after it.
    The outcome can still change if an earlier-stamped measurement arrives later;
    :class:`FusionDiagnostics` always holds the final counts.
    """

    source: str
    stamp_ns: int
    status: str
    reason: str | None = None
    nis: float | None = None
    reset: str | None = None
    replayed: int = 0
    detail: str = ""


@dataclass
class SourceCounters:
    """Per-source counts; ``rejected`` maps a reason to its count."""

    received: int = 0
    accepted: int = 0
    initialized: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_nis: float | None = None
    last_stamp_ns: int | None = None
    nis_sum: float = 0.0
    nis_count: int = 0

    @property
    def mean_nis(self) -> float | None:
        """Mean normalized innovation squared of accepted updates (≈ their dof when consistent)."""
        return self.nis_sum / self.nis_count if self.nis_count else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "initialized": self.initialized,
            "rejected": dict(sorted(self.rejected.items())),
            "last_nis": self.last_nis,
            "mean_nis": self.mean_nis,
            "last_stamp_ns": self.last_stamp_ns,
        }


@dataclass(frozen=True)
class FusionDiagnostics:
    """A snapshot of the filter's health, for ``/diagnostics`` and reports."""

    initialized: bool
    newest_stamp_ns: int | None
    resets: int
    reset_reasons: dict[str, int]
    reinitializations: int
    buffered: int
    sources: dict[str, SourceCounters]

    def as_dict(self) -> dict[str, Any]:
        return {
            "initialized": self.initialized,
            "newest_stamp_ns": self.newest_stamp_ns,
            "resets": self.resets,
            "reset_reasons": dict(self.reset_reasons),
            "reinitializations": self.reinitializations,
            "buffered": self.buffered,
            "sources": {name: c.as_dict() for name, c in sorted(self.sources.items())},
        }


@dataclass
class _State:
    """Filter state at ``stamp_ns``; ``mean is None`` until initialized."""

    stamp_ns: int
    mean: np.ndarray | None = None
    covariance: np.ndarray | None = None
    up_m: float = float("nan")
    # First fix of a position-only source, waiting for a second one to give the heading.
    course_anchor: Observation | None = None
    rejection_streaks: dict[str, int] = field(default_factory=dict)

    def copy(self) -> _State:
        return _State(
            self.stamp_ns,
            None if self.mean is None else self.mean.copy(),
            None if self.covariance is None else self.covariance.copy(),
            self.up_m,
            self.course_anchor,
            dict(self.rejection_streaks),
        )


@dataclass(frozen=True)
class _Outcome:
    status: str
    reason: str | None = None
    nis: float | None = None
    detail: str = ""


@dataclass
class _Entry:
    """A buffered measurement, its latest outcome and the state right after it."""

    key: tuple[int, str, int]
    observation: Observation
    outcome: _Outcome
    state_after: _State


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
        self._bias_slots, self._biases = _bias_layout(self.config)
        self._dim = STATE_DIM + (0 if self._biases is None else self._biases.size)
        self._counters: dict[str, SourceCounters] = {}
        self._warned_sources: set[str] = set()
        self._resets: Counter[str] = Counter()
        self._reinitializations = 0
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
            obs = self._condition(obs, cfg)
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
            obs = self._condition(observation_from_motion(measurement), cfg)
        except InvalidMeasurementError as exc:
            return self._reject_now(source, stamp, exc.reason, str(exc))
        return self._insert(obs)

    def estimate_at(self, stamp_ns: int) -> PoseEstimate | None:
        """The fused pose at ``stamp_ns`` from the measurements stamped at or before it.

        ``None`` before initialization, for stamps older than the history window, and more than
        ``max_extrapolation_s`` after the last measurement used.
        """
        stamp_ns = int(stamp_ns)
        state = self._state_for(stamp_ns)
        if state is None or state.mean is None or state.covariance is None:
            return None
        dt = (stamp_ns - state.stamp_ns) * 1e-9
        if dt > self.config.max_extrapolation_s:
            return None
        mean, cov = predict(state.mean, state.covariance, dt, self.config.process_noise, self._biases)
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
        return self._latest_state().mean is not None

    @property
    def state(self) -> tuple[int, np.ndarray, np.ndarray] | None:
        """``(stamp_ns, mean, covariance)`` after the newest measurement, or None.

        The first 5 components are ``(x, y, yaw, v, yaw_rate)``; the rest are the bias states of
        sources with ``error_correlation_s > 0`` (see :meth:`bias_indices`).
        """
        s = self._latest_state()
        if s.mean is None or s.covariance is None:
            return None
        return s.stamp_ns, s.mean.copy(), s.covariance.copy()

    def bias_indices(self, source: str) -> dict[int, int]:
        """Map from a measured state index (0 = x, 1 = y, 2 = yaw) to ``source``'s bias state."""
        return dict(self._bias_slots.get(source, {}))

    @property
    def diagnostics(self) -> FusionDiagnostics:
        return FusionDiagnostics(
            initialized=self.initialized,
            newest_stamp_ns=self._clock.newest_ns,
            resets=sum(self._resets.values()),
            reset_reasons=dict(self._resets),
            reinitializations=self._reinitializations,
            buffered=len(self._entries),
            sources={name: copy.deepcopy(c) for name, c in self._counters.items()},
        )

    # ------------------------------------------------------------------ bookkeeping

    def _clear(self) -> None:
        self._entries: list[_Entry] = []
        self._base = _State(stamp_ns=-(2**62))
        # Newest stamp covered by ``_base`` (the last pruned entry); None: nothing pruned yet.
        self._base_key_ns: int | None = None
        self._clock.clear()

    def _counter(self, source: str) -> SourceCounters:
        return self._counters.setdefault(source, SourceCounters())

    def _source_config(
        self, source: str, table: dict[str, _ConfigT], stamp_ns: int
    ) -> _ConfigT | UpdateResult:
        self._counter(source).received += 1
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
        self._counter(source).rejected[reason] += 1
        if detail:
            logger.debug("rejected %s: %s", source, detail)
        return UpdateResult(source, stamp_ns, STATUS_REJECTED, reason, detail=detail)

    def _add_position(self, measurement: PositionMeasurement, cfg: PositionSourceConfig) -> UpdateResult:
        try:
            obs = self._condition(observation_from_position(measurement), cfg)
        except InvalidMeasurementError as exc:
            return self._reject_now(measurement.source, measurement.stamp_ns, exc.reason, str(exc))
        return self._insert(obs)

    def _condition(self, obs: Observation, cfg: SourceConfig) -> Observation:
        """Drop "not measured" dimensions, then apply the source's scale and added variances."""
        keep = np.diag(obs.covariance) < self.config.ignore_variance
        if not keep.any():
            raise InvalidMeasurementError(
                RejectReason.NOTHING_MEASURED.value,
                f"every variance of the {obs.source} measurement is >= ignore_variance",
            )
        if not keep.all():
            obs = obs.restricted(keep)
        added = np.array([_added_variance(cfg, index) for index in obs.indices])
        cov = cfg.covariance_scale * obs.covariance + np.diag(added)
        return Observation(obs.stamp_ns, obs.source, obs.indices, obs.values, cov, obs.up_m)

    def _gate_probability(self, source: str) -> float:
        for table in (self.config.pose_sources, self.config.position_sources, self.config.motion_sources):
            cfg = table.get(source)
            if cfg is not None and cfg.gate_probability is not None:
                return float(cfg.gate_probability)
        return self.config.gate_probability

    def _latest_state(self) -> _State:
        return self._entries[-1].state_after if self._entries else self._base

    def _state_for(self, stamp_ns: int) -> _State | None:
        """State after every measurement stamped at or before ``stamp_ns`` (None: too old)."""
        keys = [e.key[0] for e in self._entries]
        i = bisect.bisect_right(keys, stamp_ns)
        if i > 0:
            return self._entries[i - 1].state_after
        if self._base_key_ns is not None and stamp_ns < self._base_key_ns:
            return None
        return self._base

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
        index = bisect.bisect_right([e.key for e in self._entries], key)
        state = self._entries[index - 1].state_after if index > 0 else self._base
        placeholder = _Outcome(STATUS_REJECTED)
        self._entries.insert(index, _Entry(key, obs, placeholder, state))
        self._replay_from(index, new_index=index)
        entry = self._entries[index]
        replayed = len(self._entries) - index - 1
        result = UpdateResult(
            obs.source,
            stamp,
            entry.outcome.status,
            entry.outcome.reason,
            entry.outcome.nis,
            reset,
            replayed,
            entry.outcome.detail,
        )
        self._clock.adopt(obs.source, stamp)
        self._prune()
        return result

    def _replay_from(self, index: int, new_index: int) -> None:
        state = self._entries[index - 1].state_after if index > 0 else self._base
        for j in range(index, len(self._entries)):
            entry = self._entries[j]
            state, outcome = self._apply(state, entry.observation)
            if j != new_index:
                self._uncount(entry.observation.source, entry.outcome)
            self._count(entry.observation.source, entry.observation.stamp_ns, outcome)
            entry.outcome = outcome
            entry.state_after = state

    def _prune(self) -> None:
        assert self._clock.newest_ns is not None
        horizon = self._clock.newest_ns - round(self.config.history_s * 1e9)
        drop = 0
        while drop < len(self._entries) and self._entries[drop].key[0] < horizon:
            drop += 1
        if drop:
            self._base = self._entries[drop - 1].state_after
            self._base_key_ns = self._entries[drop - 1].key[0]
            del self._entries[:drop]

    def _count(self, source: str, stamp_ns: int, outcome: _Outcome) -> None:
        c = self._counter(source)
        if outcome.status == STATUS_ACCEPTED:
            c.accepted += 1
            if outcome.nis is not None:
                c.nis_sum += outcome.nis
                c.nis_count += 1
        elif outcome.status == STATUS_INITIALIZED:
            c.initialized += 1
            if outcome.reason == REINIT_DIVERGENCE:
                self._reinitializations += 1
        else:
            c.rejected[outcome.reason or "unknown"] += 1
        if outcome.nis is not None:
            c.last_nis = outcome.nis
        c.last_stamp_ns = stamp_ns

    def _uncount(self, source: str, outcome: _Outcome) -> None:
        c = self._counter(source)
        if outcome.status == STATUS_ACCEPTED:
            c.accepted -= 1
            if outcome.nis is not None:
                c.nis_sum -= outcome.nis
                c.nis_count -= 1
        elif outcome.status == STATUS_INITIALIZED:
            c.initialized -= 1
            if outcome.reason == REINIT_DIVERGENCE:
                self._reinitializations -= 1
        else:
            reason = outcome.reason or "unknown"
            c.rejected[reason] -= 1
            if c.rejected[reason] == 0:
                del c.rejected[reason]

    # ------------------------------------------------------------------ the filter proper

    def _apply(self, state: _State, obs: Observation) -> tuple[_State, _Outcome]:
        """Process one observation on ``state``; returns the new state and the outcome."""
        if state.mean is None:
            return self._try_initialize(state, obs)
        assert state.covariance is not None
        dt = (obs.stamp_ns - state.stamp_ns) * 1e-9
        mean, cov = predict(state.mean, state.covariance, dt, self.config.process_noise, self._biases)
        h = self._observation_matrix(obs)
        idx = np.array(obs.indices)
        innovation = obs.values - h @ mean
        angular = idx == STATE_YAW
        innovation[angular] = wrap_angle(innovation[angular])
        s = h @ cov @ h.T + obs.covariance
        gate = mahalanobis_gate(innovation, s, self._gate_probability(obs.source))
        new = state.copy()
        if not gate.accepted:
            outcome = _Outcome(
                STATUS_REJECTED,
                RejectReason.GATE.value,
                gate.nis,
                f"NIS {gate.nis:.2f} > {gate.threshold:.2f}",
            )
            return self._after_gate_rejection(new, obs, outcome)
        # Kalman update in Joseph form (stays symmetric positive definite under rounding).
        gain = np.linalg.solve(s, h @ cov).T
        mean = mean + gain @ innovation
        mean[STATE_YAW] = float(wrap_angle(mean[STATE_YAW]))
        i_kh = np.eye(self._dim) - gain @ h
        cov = i_kh @ cov @ i_kh.T + gain @ obs.covariance @ gain.T
        new.stamp_ns = obs.stamp_ns
        new.mean = mean
        new.covariance = 0.5 * (cov + cov.T)
        if math.isfinite(obs.up_m):
            new.up_m = obs.up_m
        new.rejection_streaks.pop(obs.source, None)
        return new, _Outcome(STATUS_ACCEPTED, nis=gate.nis)

    def _after_gate_rejection(
        self, state: _State, obs: Observation, outcome: _Outcome
    ) -> tuple[_State, _Outcome]:
        cfg = self.config.pose_sources.get(obs.source)
        limit = cfg.reinit_after_rejections if cfg is not None else 0
        if limit <= 0 or not self._can_initialize_from_pose(obs):
            return state, outcome
        streak = state.rejection_streaks.get(obs.source, 0) + 1
        state.rejection_streaks[obs.source] = streak
        if streak < limit:
            return state, outcome
        logger.warning(
            "fusion re-initializes from '%s' at %d ns after %d consecutive gate rejections",
            obs.source,
            obs.stamp_ns,
            streak,
        )
        fresh = self._initial_state_from_pose(obs)
        return fresh, _Outcome(STATUS_INITIALIZED, REINIT_DIVERGENCE, outcome.nis, outcome.detail)

    def _can_initialize_from_pose(self, obs: Observation) -> bool:
        cfg = self.config.pose_sources.get(obs.source)
        if cfg is None or not cfg.allow_initialization or obs.indices != (STATE_X, STATE_Y, STATE_YAW):
            return False
        init = self.config.init
        position_std = math.sqrt(float(np.linalg.eigvalsh(obs.covariance[:2, :2]).max()))
        yaw_std = math.sqrt(float(obs.covariance[2, 2]))
        return position_std <= init.max_position_std_m and yaw_std <= math.radians(init.max_yaw_std_deg)

    def _observation_matrix(self, obs: Observation) -> np.ndarray:
        """``H``: each measured component is its state plus, if modelled, its source's bias."""
        h = np.zeros((len(obs.indices), self._dim))
        slots = self._bias_slots.get(obs.source, {})
        for row, index in enumerate(obs.indices):
            h[row, index] = 1.0
            if index in slots:
                h[row, slots[index]] = 1.0
        return h

    def _prior(
        self, base_mean: np.ndarray, base_cov: np.ndarray, obs: Observation
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full initial state: the base block, zero-mean biases at their stationary variance.

        A base estimate taken from ``obs`` of a biased source is ``z - b``: its variance grows by
        the bias variance and it is anti-correlated with that bias.
        """
        mean = np.zeros(self._dim)
        cov = np.zeros((self._dim, self._dim))
        mean[:STATE_DIM] = base_mean
        cov[:STATE_DIM, :STATE_DIM] = base_cov
        if self._biases is not None:
            bias_diag = np.arange(STATE_DIM, self._dim)
            cov[bias_diag, bias_diag] = self._biases.std**2
            for index, slot in self._bias_slots.get(obs.source, {}).items():
                variance = cov[slot, slot]
                cov[index, index] += variance
                cov[index, slot] = cov[slot, index] = -variance
        return mean, cov

    def _initial_state_from_pose(self, obs: Observation) -> _State:
        init = self.config.init
        base_mean = np.zeros(STATE_DIM)
        base_mean[:3] = obs.values
        base_mean[STATE_YAW] = float(wrap_angle(base_mean[STATE_YAW]))
        base_cov = np.zeros((STATE_DIM, STATE_DIM))
        base_cov[:3, :3] = obs.covariance
        base_cov[STATE_SPEED, STATE_SPEED] = init.speed_std_mps**2
        base_cov[STATE_YAW_RATE, STATE_YAW_RATE] = math.radians(init.yaw_rate_std_dps) ** 2
        mean, cov = self._prior(base_mean, base_cov, obs)
        return _State(obs.stamp_ns, mean, cov, obs.up_m)

    def _try_initialize(self, state: _State, obs: Observation) -> tuple[_State, _Outcome]:
        if self._can_initialize_from_pose(obs):
            logger.info("fusion initialized from '%s' at %d ns", obs.source, obs.stamp_ns)
            return self._initial_state_from_pose(obs), _Outcome(STATUS_INITIALIZED)
        position_cfg = self.config.position_sources.get(obs.source)
        if position_cfg is None or not position_cfg.allow_initialization or obs.indices != (STATE_X, STATE_Y):
            return state, _Outcome(STATUS_REJECTED, RejectReason.NOT_INITIALIZED.value)
        return self._try_initialize_from_course(state, obs)

    def _try_initialize_from_course(self, state: _State, obs: Observation) -> tuple[_State, _Outcome]:
        """Two position fixes far enough apart give position, heading (course) and speed."""
        init = self.config.init
        anchor = state.course_anchor
        waiting = _Outcome(STATUS_REJECTED, RejectReason.NOT_INITIALIZED.value, detail="course anchor")
        span = None if anchor is None else (obs.stamp_ns - anchor.stamp_ns) * 1e-9
        if anchor is None or span is None or span > init.course_max_span_s or span <= 0.0:
            new = state.copy()
            new.course_anchor = obs
            new.stamp_ns = obs.stamp_ns
            return new, waiting
        chord = obs.values - anchor.values
        length = float(np.hypot(chord[0], chord[1]))
        if length < init.course_baseline_m:
            return state, waiting
        along = chord / length
        across = np.array([-along[1], along[0]])
        # State (x, y, yaw, v) as a function of both fixes; first-order covariance propagation.
        jac = np.zeros((4, 4))
        jac[0:2, 2:4] = np.eye(2)
        jac[2, 0:2], jac[2, 2:4] = -across / length, across / length
        jac[3, 0:2], jac[3, 2:4] = -along / span, along / span
        fixes_cov = np.zeros((4, 4))
        fixes_cov[:2, :2] = anchor.covariance
        fixes_cov[2:, 2:] = obs.covariance
        cov4 = jac @ fixes_cov @ jac.T
        yaw_rate_var = math.radians(init.yaw_rate_std_dps) ** 2
        # The chord's direction is the heading half-way through the span, not at its end.
        cov4[2, 2] += yaw_rate_var * (0.5 * span) ** 2
        cov4[3, 3] += self.config.process_noise.longitudinal_accel**2 * span
        base_mean = np.array(
            [obs.values[0], obs.values[1], math.atan2(along[1], along[0]), length / span, 0.0]
        )
        base_cov = np.zeros((STATE_DIM, STATE_DIM))
        base_cov[:4, :4] = cov4
        base_cov[STATE_YAW_RATE, STATE_YAW_RATE] = yaw_rate_var
        # A bias common to both fixes cancels in the chord but not in the position.
        mean, cov = self._prior(base_mean, base_cov, obs)
        logger.info(
            "fusion initialized from '%s' course over %.1f m (heading std %.1f deg)",
            obs.source,
            length,
            math.degrees(math.sqrt(cov4[2, 2])),
        )
        return _State(obs.stamp_ns, mean, cov, obs.up_m), _Outcome(STATUS_INITIALIZED)


def _bias_layout(config: FusionConfig) -> tuple[dict[str, dict[int, int]], BiasModel | None]:
    """Bias states appended after the CTRV state, for every source with correlated errors."""
    slots: dict[str, dict[int, int]] = {}
    correlation: list[float] = []
    std: list[float] = []
    sources: list[tuple[str, PoseSourceConfig | PositionSourceConfig]] = [
        *sorted(config.pose_sources.items()),
        *sorted(config.position_sources.items()),
    ]
    for name, cfg in sources:
        if not cfg.enabled or cfg.error_correlation_s <= 0.0:
            continue
        components = [(STATE_X, cfg.bias_position_std_m), (STATE_Y, cfg.bias_position_std_m)]
        if isinstance(cfg, PoseSourceConfig) and cfg.use_yaw and cfg.bias_yaw_std_deg > 0.0:
            components.append((STATE_YAW, math.radians(cfg.bias_yaw_std_deg)))
        slots[name] = {}
        for index, component_std in components:
            slots[name][index] = STATE_DIM + len(std)
            correlation.append(cfg.error_correlation_s)
            std.append(component_std)
    if not std:
        return slots, None
    return slots, BiasModel(np.array(correlation), np.array(std))


def _added_variance(cfg: SourceConfig, state_index: int) -> float:
    """The variance a source config adds to the measured state component ``state_index``."""
    if isinstance(cfg, PoseSourceConfig):
        if state_index == STATE_YAW:
            return math.radians(cfg.added_yaw_std_deg) ** 2
        return cfg.added_position_std_m**2
    if isinstance(cfg, PositionSourceConfig):
        return cfg.added_position_std_m**2
    if state_index == STATE_SPEED:
        return cfg.added_speed_std_mps**2
    return math.radians(cfg.added_yaw_rate_std_dps) ** 2
