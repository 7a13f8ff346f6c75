"""Initialization of the planar fusion filter.

From the first absolute pose within the ``init`` limits (or its source's own,
``PoseSourceConfig.init_max_*``: an operator's pose); from two position fixes at least
``course_baseline_m`` apart (course over ground as heading) for position-only sources; and
re-initialization from a source whose ``reinit_after_rejections`` consecutive
initialization-grade poses all fail the gate (divergence).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from geoloc_ros.fusion.ekf import FilterState, PlanarEkf
from geoloc_ros.fusion.measurements import (
    STATE_DIM,
    STATE_SPEED,
    STATE_X,
    STATE_Y,
    STATE_YAW,
    STATE_YAW_RATE,
    Observation,
    RejectReason,
)
from geoloc_ros.fusion.outcomes import REINIT_DIVERGENCE, STATUS_INITIALIZED, STATUS_REJECTED, Outcome
from geoloc_ros.geo.heading import wrap_angle

logger = logging.getLogger(__name__)


class Initializer:
    """Initial states for the filter of ``ekf`` (its config and bias priors)."""

    def __init__(self, ekf: PlanarEkf) -> None:
        self.ekf = ekf
        self.config = ekf.config

    def after_gate_rejection(
        self, state: FilterState, obs: Observation, outcome: Outcome
    ) -> tuple[FilterState, Outcome]:
        cfg = self.config.pose_sources.get(obs.source)
        limit = cfg.reinit_after_rejections if cfg is not None else 0
        if limit <= 0 or not self.can_initialize_from_pose(obs):
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
        fresh = self.initial_state_from_pose(obs)
        return fresh, Outcome(STATUS_INITIALIZED, REINIT_DIVERGENCE, outcome.nis, outcome.detail)

    def can_initialize_from_pose(self, obs: Observation) -> bool:
        cfg = self.config.pose_sources.get(obs.source)
        if cfg is None or not cfg.allow_initialization or obs.indices != (STATE_X, STATE_Y, STATE_YAW):
            return False
        init = self.config.init
        max_position_std = cfg.init_max_position_std_m or init.max_position_std_m
        max_yaw_std_deg = cfg.init_max_yaw_std_deg or init.max_yaw_std_deg
        position_std = math.sqrt(float(np.linalg.eigvalsh(obs.covariance[:2, :2]).max()))
        yaw_std = math.sqrt(float(obs.covariance[2, 2]))
        return position_std <= max_position_std and yaw_std <= math.radians(max_yaw_std_deg)

    def initial_state_from_pose(self, obs: Observation) -> FilterState:
        init = self.config.init
        base_mean = np.zeros(STATE_DIM)
        base_mean[:3] = obs.values
        base_mean[STATE_YAW] = float(wrap_angle(base_mean[STATE_YAW]))
        base_cov = np.zeros((STATE_DIM, STATE_DIM))
        base_cov[:3, :3] = obs.covariance
        base_cov[STATE_SPEED, STATE_SPEED] = init.speed_std_mps**2
        base_cov[STATE_YAW_RATE, STATE_YAW_RATE] = math.radians(init.yaw_rate_std_dps) ** 2
        mean, cov = self.ekf.prior(base_mean, base_cov, obs)
        return FilterState(obs.stamp_ns, mean, cov, obs.up_m)

    def try_initialize(self, state: FilterState, obs: Observation) -> tuple[FilterState, Outcome]:
        if self.can_initialize_from_pose(obs):
            logger.info("fusion initialized from '%s' at %d ns", obs.source, obs.stamp_ns)
            return self.initial_state_from_pose(obs), Outcome(STATUS_INITIALIZED)
        position_cfg = self.config.position_sources.get(obs.source)
        if position_cfg is None or not position_cfg.allow_initialization or obs.indices != (STATE_X, STATE_Y):
            return state, Outcome(STATUS_REJECTED, RejectReason.NOT_INITIALIZED.value)
        return self._from_course(state, obs)

    def _from_course(self, state: FilterState, obs: Observation) -> tuple[FilterState, Outcome]:
        """Two position fixes far enough apart give position, heading (course) and speed."""
        init = self.config.init
        anchor = state.course_anchor
        waiting = Outcome(STATUS_REJECTED, RejectReason.NOT_INITIALIZED.value, detail="course anchor")
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
        mean, cov = self.ekf.prior(base_mean, base_cov, obs)
        logger.info(
            "fusion initialized from '%s' course over %.1f m (heading std %.1f deg)",
            obs.source,
            length,
            math.degrees(math.sqrt(cov4[2, 2])),
        )
        return FilterState(obs.stamp_ns, mean, cov, obs.up_m), Outcome(STATUS_INITIALIZED)
