"""The EKF step of the planar fusion filter: the state, the observation model, predict + gated update.

The state is ``(x, y, yaw, v, yaw_rate)`` (:mod:`geoloc_ros.fusion.motion_model`) followed by the
bias states of sources with correlated errors (:func:`bias_layout`). Updates are gated on the
normalized innovation squared and use the Joseph form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.fusion.config import FusionConfig, MotionSourceConfig, PoseSourceConfig, PositionSourceConfig
from geoloc_ros.fusion.errors import InvalidMeasurementError
from geoloc_ros.fusion.gating import mahalanobis_gate
from geoloc_ros.fusion.measurements import (
    STATE_DIM,
    STATE_SPEED,
    STATE_X,
    STATE_Y,
    STATE_YAW,
    Observation,
    RejectReason,
)
from geoloc_ros.fusion.motion_model import BiasModel, predict
from geoloc_ros.fusion.outcomes import STATUS_ACCEPTED, STATUS_REJECTED, Outcome
from geoloc_ros.geo.heading import wrap_angle

SourceConfig = PoseSourceConfig | PositionSourceConfig | MotionSourceConfig


@dataclass
class FilterState:
    """Filter state at ``stamp_ns``; ``mean is None`` until initialized."""

    stamp_ns: int
    mean: np.ndarray | None = None
    covariance: np.ndarray | None = None
    up_m: float = float("nan")
    # First fix of a position-only source, waiting for a second one to give the heading.
    course_anchor: Observation | None = None
    rejection_streaks: dict[str, int] = field(default_factory=dict)
    # Stamp of each source's last accepted update (PoseSourceConfig.min_update_interval_s).
    last_update_ns: dict[str, int] = field(default_factory=dict)

    def copy(self) -> FilterState:
        return FilterState(
            self.stamp_ns,
            None if self.mean is None else self.mean.copy(),
            None if self.covariance is None else self.covariance.copy(),
            self.up_m,
            self.course_anchor,
            dict(self.rejection_streaks),
            dict(self.last_update_ns),
        )


class PlanarEkf:
    """The filter's model under a :class:`FusionConfig`: conditioning, gating, update and priors."""

    def __init__(self, config: FusionConfig) -> None:
        self.config = config
        self.bias_slots, self.biases = bias_layout(config)
        self.dim = STATE_DIM + (0 if self.biases is None else self.biases.size)

    def condition(self, obs: Observation, cfg: SourceConfig) -> Observation:
        """Drop "not measured" dimensions, then apply the source's scale and added variances."""
        keep = np.diag(obs.covariance) < self.config.ignore_variance
        if not keep.any():
            raise InvalidMeasurementError(
                RejectReason.NOTHING_MEASURED.value,
                f"every variance of the {obs.source} measurement is >= ignore_variance",
            )
        if not keep.all():
            obs = obs.restricted(keep)
        added = np.array([added_variance(cfg, index) for index in obs.indices])
        scales = covariance_scales(cfg, obs)
        if np.all(scales == scales[0]):
            cov = scales[0] * obs.covariance + np.diag(added)
        else:
            root = np.sqrt(scales)
            scaled = root[:, None] * obs.covariance * root[None, :]
            cov = 0.5 * (scaled + scaled.T) + np.diag(added)
        return Observation(obs.stamp_ns, obs.source, obs.indices, obs.values, cov, obs.up_m)

    def gate_probability(self, source: str) -> float:
        for table in (self.config.pose_sources, self.config.position_sources, self.config.motion_sources):
            cfg = table.get(source)
            if cfg is not None and cfg.gate_probability is not None:
                return float(cfg.gate_probability)
        return self.config.gate_probability

    def update(self, state: FilterState, obs: Observation) -> tuple[FilterState, Outcome]:
        """Predict ``state`` (initialized) to ``obs`` and update it if the gate accepts ``obs``.

        A gate rejection returns a copy of ``state`` unchanged, with the rejected outcome.
        """
        assert state.mean is not None and state.covariance is not None
        source = self.config.pose_sources.get(obs.source)
        last = state.last_update_ns.get(obs.source)
        if source is not None and source.min_update_interval_s > 0.0 and last is not None:
            since = (obs.stamp_ns - last) * 1e-9
            if 0.0 <= since < source.min_update_interval_s:
                detail = f"{since:.2f} s after the last update (< {source.min_update_interval_s:g} s)"
                return state.copy(), Outcome(STATUS_REJECTED, RejectReason.DECIMATED.value, None, detail)
        dt = (obs.stamp_ns - state.stamp_ns) * 1e-9
        mean, cov = predict(state.mean, state.covariance, dt, self.config.process_noise, self.biases)
        h = self.observation_matrix(obs)
        idx = np.array(obs.indices)
        innovation = obs.values - h @ mean
        angular = idx == STATE_YAW
        innovation[angular] = wrap_angle(innovation[angular])
        s = h @ cov @ h.T + obs.covariance
        gate = mahalanobis_gate(innovation, s, self.gate_probability(obs.source))
        new = state.copy()
        if not gate.accepted:
            outcome = Outcome(
                STATUS_REJECTED,
                RejectReason.GATE.value,
                gate.nis,
                f"NIS {gate.nis:.2f} > {gate.threshold:.2f}",
            )
            return new, outcome
        # Kalman update in Joseph form (stays symmetric positive definite under rounding).
        gain = np.linalg.solve(s, h @ cov).T
        mean = mean + gain @ innovation
        mean[STATE_YAW] = float(wrap_angle(mean[STATE_YAW]))
        i_kh = np.eye(self.dim) - gain @ h
        cov = i_kh @ cov @ i_kh.T + gain @ obs.covariance @ gain.T
        new.stamp_ns = obs.stamp_ns
        new.mean = mean
        new.covariance = 0.5 * (cov + cov.T)
        if math.isfinite(obs.up_m):
            new.up_m = obs.up_m
        new.rejection_streaks.pop(obs.source, None)
        new.last_update_ns[obs.source] = obs.stamp_ns
        return new, Outcome(STATUS_ACCEPTED, nis=gate.nis)

    def observation_matrix(self, obs: Observation) -> np.ndarray:
        """``H``: each measured component is its state plus, if modelled, its source's bias."""
        h = np.zeros((len(obs.indices), self.dim))
        slots = self.bias_slots.get(obs.source, {})
        for row, index in enumerate(obs.indices):
            h[row, index] = 1.0
            if index in slots:
                h[row, slots[index]] = 1.0
        return h

    def prior(
        self, base_mean: np.ndarray, base_cov: np.ndarray, obs: Observation
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full initial state: the base block, zero-mean biases at their stationary variance.

        A base estimate taken from ``obs`` of a biased source is ``z - b``: its variance grows by
        the bias variance and it is anti-correlated with that bias.
        """
        mean = np.zeros(self.dim)
        cov = np.zeros((self.dim, self.dim))
        mean[:STATE_DIM] = base_mean
        cov[:STATE_DIM, :STATE_DIM] = base_cov
        if self.biases is not None:
            bias_diag = np.arange(STATE_DIM, self.dim)
            cov[bias_diag, bias_diag] = self.biases.std**2
            for index, slot in self.bias_slots.get(obs.source, {}).items():
                variance = cov[slot, slot]
                cov[index, index] += variance
                cov[index, slot] = cov[slot, index] = -variance
        return mean, cov


def bias_layout(config: FusionConfig) -> tuple[dict[str, dict[int, int]], BiasModel | None]:
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


def covariance_scales(cfg: SourceConfig, obs: Observation) -> np.ndarray:
    """The factor on each measured variance (the covariance becomes ``D Σ D``, ``D = diag(√factor)``).

    ``covariance_scale`` throughout, except for a pose source anchored on a map that states its pose
    uncertainty (``map_covariance_scale`` set, :class:`geoloc_ros.fusion.config.MapErrorConfig`): the
    share of each measured variance that the map's stated error explains (bias variance over the
    published variance, at most 1) is carried by the bias state and scaled by
    ``map_covariance_scale``; the rest, the source's own noise, keeps ``covariance_scale``. On a
    refined map stating centimetres that rest is nearly all of it, and the exact-map scale holds.
    """
    scales = np.full(len(obs.indices), cfg.covariance_scale)
    if not isinstance(cfg, PoseSourceConfig) or cfg.map_covariance_scale is None:
        return scales
    variances = np.diag(obs.covariance)
    for k, index in enumerate(obs.indices):
        bias = math.radians(cfg.bias_yaw_std_deg) ** 2 if index == STATE_YAW else cfg.bias_position_std_m**2
        share = min(1.0, bias / variances[k]) if variances[k] > 0.0 else 1.0
        scales[k] = share * cfg.map_covariance_scale + (1.0 - share) * cfg.covariance_scale
    return scales


def added_variance(cfg: SourceConfig, state_index: int) -> float:
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
