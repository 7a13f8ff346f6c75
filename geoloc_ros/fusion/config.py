"""Typed configuration of the fusion filter (YAML via :func:`geoloc_ros.config.load_yaml`).

Units are in the field names or documented beside them. Process noise is given as the square
root of a continuous-time power spectral density, so it does not depend on the measurement rate:
``longitudinal_accel = 1.0`` means the speed's standard deviation grows by 1 m/s after one second
without measurements (and by sqrt(t) m/s after t seconds).

An example ``fusion.yaml``::

    gate_probability: 0.999
    history_s: 1.0
    process_noise: {longitudinal_accel: 1.5, yaw_accel: 0.6}
    pose_sources:
      bovw: {covariance_scale: 2.0, reinit_after_rejections: 10}
      posenet: {covariance_scale: 9.0, min_update_interval_s: 1.0, allow_initialization: false}
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from geoloc_ros.config import GateProbability, StrictModel, load_yaml
from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE
from geoloc_ros.geometry.sources import (
    SOURCE_BOVW,
    SOURCE_FUSED,
    SOURCE_GPS,
    SOURCE_IMU,
    SOURCE_ODOMETRY,
    SOURCE_POSENET,
    SOURCE_POSENET_TEMPORAL,
)


class ProcessNoiseConfig(StrictModel):
    """Continuous white-noise driving terms of the constant-turn-rate-and-velocity model."""

    # m/s^(3/2): white longitudinal acceleration; speed std grows by this after 1 s.
    longitudinal_accel: float = Field(1.5, gt=0.0)
    # rad/s^(3/2): white yaw acceleration; yaw-rate std grows by this after 1 s.
    yaw_accel: float = Field(0.6, gt=0.0)
    # m/s^(1/2): extra position random walk for what CTRV ignores (side slip, antenna lever arm).
    position: float = Field(0.05, ge=0.0)
    # rad/s^(1/2): extra heading random walk.
    yaw: float = Field(0.005, ge=0.0)
    # Long predictions are split into steps of at most this length so that heading uncertainty
    # turns into cross-track position uncertainty as it does along a real path.
    max_step_s: float = Field(0.1, gt=0.0, le=1.0)


class InitConfig(StrictModel):
    """When and how the filter starts (and restarts after a reset)."""

    # An absolute pose initializes the filter when its (scaled) uncertainty is at most this.
    max_position_std_m: float = Field(1.0, gt=0.0)
    max_yaw_std_deg: float = Field(10.0, gt=0.0)
    # Speed and yaw rate are unknown at start: a zero mean with these standard deviations.
    speed_std_mps: float = Field(10.0, gt=0.0)
    yaw_rate_std_dps: float = Field(30.0, gt=0.0)
    # Position-only sources (GPS) initialize from two fixes this far apart (heading = course).
    course_baseline_m: float = Field(15.0, gt=0.0)
    # ... taken at most this long apart; an older first fix is replaced by the newer one.
    course_max_span_s: float = Field(10.0, gt=0.0)


class PoseSourceConfig(StrictModel):
    """An absolute pose source (x, y, yaw with a 3x3 covariance): BoVW, PoseNet, ..."""

    enabled: bool = True
    # The published covariance is multiplied by this, then the added terms are added in
    # quadrature (variance += std^2): the knobs for sources whose covariance is optimistic or
    # whose errors are correlated in time (which a filter would otherwise over-trust).
    covariance_scale: float = Field(1.0, gt=0.0)
    added_position_std_m: float = Field(0.0, ge=0.0)
    added_yaw_std_deg: float = Field(0.0, ge=0.0)
    use_yaw: bool = True
    # > 0: part of the error is a slowly varying bias (PoseNet's errors persist over seconds).
    # It becomes a first-order Gauss-Markov state with this correlation time and these
    # stationary stds, learned while better sources agree and used to correct this source
    # while they are missing; the covariance above then describes only the remaining white noise.
    error_correlation_s: float = Field(0.0, ge=0.0)
    bias_position_std_m: float = Field(1.0, gt=0.0)
    bias_yaw_std_deg: float = Field(0.0, ge=0.0)  # 0: no yaw bias state
    # Set by FusionConfig.with_map_error: the share of each published variance that the map's stated
    # pose error (the bias above) explains is scaled by this instead of covariance_scale
    # (fusion.ekf.covariance_scales). None: covariance_scale on the whole covariance.
    map_covariance_scale: float | None = Field(None, gt=0.0)
    gate_probability: GateProbability | None = None
    # > 0: at most one update per this many seconds; the source's poses stamped sooner after its
    # last accepted one are skipped (reason "decimated"). A source whose errors persist for seconds
    # beyond what the bias state above models (PoseNet: errors of metres that stay for whole street
    # stretches) carries about one independent pose per such interval; fused at camera rate, the
    # same error is counted many times over and drags the fused pose through BoVW gaps.
    min_update_interval_s: float = Field(0.0, ge=0.0)
    allow_initialization: bool = True
    # This source's own initialization limits (None: the ``init`` section's). An operator's pose
    # (/initialpose, a deliberate command) may start the filter from wider uncertainty than automatic
    # start-up: RViz's 2D Pose Estimate states 15 deg of yaw sigma.
    init_max_position_std_m: float | None = Field(None, gt=0.0)
    init_max_yaw_std_deg: float | None = Field(None, gt=0.0, le=180.0)
    # After this many consecutive gate rejections of initialization-grade poses from this source
    # the filter re-initializes from the latest one (it has diverged); 0 disables.
    reinit_after_rejections: int = Field(0, ge=0)


class PositionSourceConfig(StrictModel):
    """An absolute position source (x, y): consumer GPS."""

    enabled: bool = True
    covariance_scale: float = Field(1.0, gt=0.0)
    added_position_std_m: float = Field(0.0, ge=0.0)
    # Used when a fix says its covariance is unknown (NavSatFix COVARIANCE_TYPE_UNKNOWN).
    unknown_covariance_std_m: float = Field(5.0, gt=0.0)
    # As for PoseSourceConfig: consumer GPS errors wander over tens of seconds.
    error_correlation_s: float = Field(0.0, ge=0.0)
    bias_position_std_m: float = Field(4.0, gt=0.0)
    gate_probability: GateProbability | None = None
    # Initialize position and heading (course over ground) from two fixes; see InitConfig.
    allow_initialization: bool = True


class MotionSourceConfig(StrictModel):
    """A speed and/or yaw-rate source: wheel odometry, IMU."""

    enabled: bool = True
    covariance_scale: float = Field(1.0, gt=0.0)
    added_speed_std_mps: float = Field(0.0, ge=0.0)
    added_yaw_rate_std_dps: float = Field(0.0, ge=0.0)
    gate_probability: GateProbability | None = None


def _default_pose_sources() -> dict[str, PoseSourceConfig]:
    return {
        # Consecutive BoVW poses share reference views, so their errors are correlated: taken as
        # independent, the fused covariance was overconfident (12-15% of true positions outside
        # the 95% ellipse on the demo and standard drives). Doubling it calibrates the fused
        # covariance there without changing the error.
        SOURCE_BOVW: PoseSourceConfig(covariance_scale=2.0, reinit_after_rejections=10),
        # PoseNet errors are correlated over seconds (design figures: 1-2 m): most of the error
        # is modelled as a bias, the published covariance is shrunk to the white remainder.
        SOURCE_POSENET: _posenet_like(),
        SOURCE_POSENET_TEMPORAL: _posenet_like(),
    }


def _posenet_like() -> PoseSourceConfig:
    # One PoseNet pose a second: measured on the realistic drive (BENCHMARKS.md, issue 13, "Fused
    # with PoseNet"), PoseNet's errors (median 12 m) stay for whole street stretches; fused at camera
    # rate they dragged the fused pose through BoVW gaps (within 1 m 99.5 -> 97.4 %, max 1.4 ->
    # 6.3 m), at one a second they no longer did.
    return PoseSourceConfig(
        covariance_scale=0.5,
        error_correlation_s=2.0,
        bias_position_std_m=1.2,
        bias_yaw_std_deg=3.0,
        min_update_interval_s=1.0,
        allow_initialization=False,
    )


def _default_position_sources() -> dict[str, PositionSourceConfig]:
    # Consumer GPS errors (3-10 m) wander over tens of seconds: mostly bias, like PoseNet.
    return {
        SOURCE_GPS: PositionSourceConfig(
            covariance_scale=0.5, error_correlation_s=30.0, bias_position_std_m=4.0
        )
    }


def _default_motion_sources() -> dict[str, MotionSourceConfig]:
    return {SOURCE_ODOMETRY: MotionSourceConfig(), SOURCE_IMU: MotionSourceConfig()}


class MapErrorConfig(StrictModel):
    """The map's own pose error, shared by every pose localized against the same panoramas.

    Real GIS panorama poses are off by about a metre and a degree or two (docs/formats.md): every
    BoVW pose anchored on a panorama inherits that panorama's error, for as long as the vehicle sees
    it. Fused as independent measurements, these poses made the fused ellipse overconfident (a
    quarter of true positions inside the 95 % ellipse on the ``realistic`` drive). With a map whose
    panoramas state their uncertainty, :meth:`FusionConfig.with_map_error` models that error as a
    first-order Gauss-Markov bias state of each source below (the PoseNet-like bias machinery):
    stationary std = the map's stated std, correlation time ``correlation_s`` (the time over which
    the vehicle keeps seeing the same panoramas). An exact map (no stated uncertainty) changes nothing.
    """

    sources: list[str] = Field(default_factory=lambda: [SOURCE_BOVW])
    correlation_s: float = Field(10.0, gt=0.0)
    # The measured covariance already contains the map term (the localizer propagates it), which the
    # bias state now carries: that share of the source's covariance is scaled by this instead of its
    # own scale (PoseSourceConfig.map_covariance_scale); the rest keeps the source's own scale.
    covariance_scale: float = Field(0.5, gt=0.0)


class FusionConfig(StrictModel):
    """Everything the planar fusion filter needs; defaults suit a car at urban speeds."""

    # Frame every pose must be expressed in; others are rejected ("wrong_frame").
    map_frame: str = Field("map", min_length=1)
    # ``PoseEstimate.source`` of the filter's outputs.
    output_source: str = Field(SOURCE_FUSED, min_length=1)
    process_noise: ProcessNoiseConfig = Field(default_factory=ProcessNoiseConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    # Mahalanobis gate: innovations outside this probability mass (chi-square, dof = measured
    # dimensions) are rejected; per-source settings may override it.
    gate_probability: GateProbability = 0.999
    # A measured variance at or above this means "not measured" (robot_localization and RViz treat
    # huge variances the same way): that dimension is left out of the update.
    ignore_variance: float = Field(UNKNOWN_VARIANCE / 10.0, gt=0.0)
    # Measurements up to this much older than the newest are re-applied in stamp order; older
    # ones are dropped ("too_old").
    history_s: float = Field(1.0, gt=0.0, le=60.0)
    # Time sanity (geoloc_ros.fusion.timeline). A stamp this far behind the newest of its own
    # source, or this far ahead of the filter clock, is off the timeline: rejected ("too_old" /
    # "future"), never adopted as the newest time. Only ``time_jump_confirmations`` consecutive
    # such stamps that agree with each other (a bag loop, a replay skipping ahead) reset the filter.
    backward_jump_reset_s: float = Field(2.0, gt=0.0)
    forward_jump_reset_s: float = Field(30.0, gt=0.0)
    time_jump_confirmations: int = Field(3, ge=1, le=100)
    # Live (a node clock is given): stamps further ahead of / behind the node clock are rejected.
    clock_max_future_s: float = Field(1.0, gt=0.0)
    clock_max_delay_s: float = Field(15.0, gt=0.0)
    # Estimates are not extrapolated further than this past the last measurement.
    max_extrapolation_s: float = Field(2.0, gt=0.0)
    pose_sources: dict[str, PoseSourceConfig] = Field(default_factory=_default_pose_sources)
    position_sources: dict[str, PositionSourceConfig] = Field(default_factory=_default_position_sources)
    motion_sources: dict[str, MotionSourceConfig] = Field(default_factory=_default_motion_sources)
    map_error: MapErrorConfig = Field(default_factory=MapErrorConfig)

    def with_map_error(self, position_std_m: float, yaw_std_deg: float) -> FusionConfig:
        """This config for a map whose panorama poses are uncertain by ``position_std_m`` (per axis)
        and ``yaw_std_deg`` (:class:`MapErrorConfig`); unchanged for an exact map (both 0)."""
        if position_std_m <= 0.0 and yaw_std_deg <= 0.0:
            return self
        sources = dict(self.pose_sources)
        for name in self.map_error.sources:
            if name not in sources:
                continue
            sources[name] = sources[name].model_copy(
                update={
                    "error_correlation_s": self.map_error.correlation_s,
                    # The bias state needs a positive position std; a heading-only error keeps it tiny.
                    "bias_position_std_m": max(position_std_m, 1e-3),
                    "bias_yaw_std_deg": yaw_std_deg,
                    "map_covariance_scale": self.map_error.covariance_scale,
                }
            )
        return self.model_copy(update={"pose_sources": sources})

    @model_validator(mode="after")
    def _check_time_windows(self) -> FusionConfig:
        if self.backward_jump_reset_s < self.history_s:
            raise ValueError(
                f"backward_jump_reset_s ({self.backward_jump_reset_s}) must be >= history_s "
                f"({self.history_s}): a late measurement inside the history must not reset the filter"
            )
        if self.clock_max_delay_s < self.history_s:
            raise ValueError(
                f"clock_max_delay_s ({self.clock_max_delay_s}) must be >= history_s ({self.history_s})"
            )
        names = [*self.pose_sources, *self.position_sources, *self.motion_sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names configured in more than one kind of source: {duplicates}")
        return self

    @classmethod
    def load(cls, path: str | Path) -> FusionConfig:
        return load_yaml(path, cls)
