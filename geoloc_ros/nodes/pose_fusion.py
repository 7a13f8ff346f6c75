"""``pose_fusion``: fuses the BoVW and PoseNet poses (and consumer GPS, odometry, IMU) with the planar EKF.

Subscribes (all optional but one pose source):
  ``pose_inputs``  a list of ``SOURCE=TOPIC``: geometry_msgs/PoseWithCovarianceStamped in ``map``, one per
                   pose source of the fusion config (robot_localization's ``pose0..N``, keyed by name)
  ``gps_topic``    sensor_msgs/NavSatFix (consumer GPS)
  ``odom_topic``   nav_msgs/Odometry (wheel odometry: speed, yaw rate, and the odom pose for map->odom)
  ``imu_topic``    sensor_msgs/Imu (yaw rate)
Publishes: ``output_topic`` PoseWithCovarianceStamped, ``fix_topic`` NavSatFix, ``path_topic`` nav_msgs/Path,
``odometry_topic`` nav_msgs/Odometry (map -> base_link with speed and yaw rate), ``/diagnostics``, and
``map -> odom`` (REP-105; ``map -> base_link`` without odometry) on ``map_odom_topic`` as a
TransformStamped and on /tf when tf2_ros is installed. ``map -> odom`` pairs the fused pose with the
odometry at the same stamp (:mod:`geoloc_ros.fusion.odometry_history`), not the newest odometry.

Everything runs on message time: the fused pose is published at the newest measurement stamp, so replay
(``use_sim_time``) and live behave the same. Stamps implausible for the filter clock or the node clock
are rejected and counted (``rejected_<source>_future`` / ``_too_old``), never adopted; a confirmed
time jump (a bag loop) resets the filter and clears the path. Bad messages are counted and skipped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from pydantic import Field
from rclpy.node import Node
from sensor_msgs.msg import Imu, NavSatFix
from std_srvs.srv import Trigger

from geoloc_ros.config import StrictModel
from geoloc_ros.errors import ConfigError
from geoloc_ros.fusion import (
    SOURCE_BOVW,
    SOURCE_GPS,
    SOURCE_IMU,
    SOURCE_ODOMETRY,
    SOURCE_POSENET,
    FusionConfig,
    GpsFix,
    MotionMeasurement,
    PlanarFusionFilter,
    UpdateResult,
)
from geoloc_ros.fusion.config import PoseSourceConfig
from geoloc_ros.fusion.measurements import RejectReason
from geoloc_ros.fusion.odometry_history import OdometryHistory, map_to_odom
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.geometry.sources import SOURCE_INITIALPOSE
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.origin import resolve_origin
from geoloc_ros.nodes.common import (
    NodeDiagnostics,
    declare_config,
    reliable_qos,
    run_node,
    sensor_qos,
    watch_dynamic_parameters,
)
from geoloc_ros.nodes.messages import (
    estimate_to_navsatfix,
    estimate_to_pose_msg,
    ns_to_stamp,
    pose_msg_to_estimate,
    stamp_to_ns,
)

try:  # tf2_ros is part of a ROS installation but not of the PyPI wheels
    from tf2_ros import TransformBroadcaster
except ImportError:  # pragma: no cover - depends on the installation
    TransformBroadcaster = None

# Read per published pose: safe to change while running (``ros2 param set``).
DYNAMIC_PARAMETERS = ("path_max_poses",)
DEFAULT_POSE_INPUTS = [f"{SOURCE_BOVW}=/geoloc/bovw/pose", f"{SOURCE_POSENET}=/geoloc/posenet/pose"]
UNKNOWN_TWIST_VARIANCE = 1e6


def parse_pose_inputs(entries: list[str], known_sources: list[str]) -> dict[str, str]:
    """``["bovw=/geoloc/bovw/pose", ...]`` -> ``{source: topic}``; each source must be a pose source of the
    fusion config (its gating, covariance scale and bias states apply to that input)."""
    inputs: dict[str, str] = {}
    for entry in entries:
        source, sep, topic = (part.strip() for part in entry.partition("="))
        if not sep or not source or not topic:
            raise ConfigError(f"node pose_fusion parameter: pose_inputs: {entry!r} is not SOURCE=TOPIC")
        if source not in known_sources:
            raise ConfigError(
                f"node pose_fusion parameter: pose_inputs: source {source!r} is not a pose source of the "
                f"fusion config (known: {', '.join(known_sources)}); add it to fusion_config's pose_sources"
            )
        if source in inputs:
            raise ConfigError(f"node pose_fusion parameter: pose_inputs: source {source!r} given twice")
        inputs[source] = topic
    return inputs


class PoseFusionNodeConfig(StrictModel):
    map_bundle: str = Field("", description="map bundle whose origin defines the map frame (or set origin_*)")
    origin_lat: float | None = Field(None, description="map origin latitude (deg) when no bundle is given")
    origin_lon: float | None = Field(None, description="map origin longitude (deg) when no bundle is given")
    origin_alt: float = Field(0.0, description="map origin altitude (m)")
    fusion_config: str = Field("", description="YAML of geoloc_ros.fusion.FusionConfig; empty = defaults")
    pose_inputs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_POSE_INPUTS),
        description="pose inputs SOURCE=TOPIC (PoseWithCovarianceStamped); SOURCE names a fusion pose source",
    )
    gps_topic: str = Field("/gps/fix", description="consumer GPS NavSatFix ('' to ignore)")
    odom_topic: str = Field("", description="nav_msgs/Odometry for speed and yaw rate ('' to ignore)")
    imu_topic: str = Field("", description="sensor_msgs/Imu for yaw rate ('' to ignore)")
    initialpose_topic: str = Field(
        "/initialpose", description="operator pose (RViz 2D Pose Estimate): restarts the filter there"
    )
    initialpose_max_position_std_m: float = Field(
        2.0, gt=0.0, le=100.0, description="an operator pose more uncertain than this (m, sigma) is ignored"
    )
    initialpose_max_yaw_std_deg: float = Field(
        20.0,
        gt=0.0,
        le=90.0,
        description="an operator pose with a larger yaw sigma (deg) is ignored (RViz's default: 15)",
    )
    output_topic: str = Field("/geoloc/fused/pose", description="fused PoseWithCovarianceStamped")
    odometry_topic: str = Field(
        "/geoloc/fused/odometry", description="fused nav_msgs/Odometry map -> base_link ('' for none)"
    )
    map_odom_topic: str = Field(
        "/geoloc/fused/map_to_odom", description="map->odom as TransformStamped ('' for none; /tf too)"
    )
    unknown_speed_std_mps: float = Field(
        0.3, gt=0.0, description="speed std of an Odometry whose twist covariance is all zero ('unknown')"
    )
    unknown_yaw_rate_std_dps: float = Field(
        1.0, gt=0.0, description="yaw rate std of an Odometry or Imu whose covariance is all zero ('unknown')"
    )
    odom_history_s: float = Field(
        2.0, gt=0.0, le=60.0, description="odometry kept to pair map->odom with the estimate's stamp"
    )
    fix_topic: str = Field("/geoloc/fused/fix", description="fused estimate as NavSatFix")
    path_topic: str = Field("/geoloc/fused/path", description="fused trajectory (nav_msgs/Path)")
    path_max_poses: int = Field(5000, ge=1, description="poses kept in the published path")
    map_frame: str = Field("map", description="frame of every pose")
    odom_frame: str = Field("odom", description="odometry frame for the map->odom transform")
    base_frame: str = Field("base_link", description="vehicle frame")
    publish_tf: bool = Field(True, description="broadcast map->odom (map->base_link without odometry)")
    clock_checks: bool = Field(
        True, description="reject stamps implausible for the node clock (false: synthetic stamps in tests)"
    )


class PoseFusionNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("pose_fusion", **node_kwargs)
        self.config = declare_config(self, PoseFusionNodeConfig, DYNAMIC_PARAMETERS)
        watch_dynamic_parameters(
            self, PoseFusionNodeConfig, lambda: self.config, self._set_config, DYNAMIC_PARAMETERS
        )
        cfg = self.config
        fusion_config = FusionConfig.load(cfg.fusion_config) if cfg.fusion_config else FusionConfig()
        # An operator's /initialpose initializes the filter like a pose source, within its own limits
        # (a deliberate command: wider than the automatic start-up's init limits).
        operator = fusion_config.pose_sources.get(SOURCE_INITIALPOSE, PoseSourceConfig())
        limits = [k for k in ("init_max_position_std_m", "init_max_yaw_std_deg") if getattr(operator, k)]
        if limits:  # one place for the operator's limits: this node's parameters, which replace them
            raise ConfigError(
                f"{cfg.fusion_config}: pose_sources.{SOURCE_INITIALPOSE}.{limits[0]}: the operator pose's "
                "limits are pose_fusion's parameters initialpose_max_position_std_m and "
                "initialpose_max_yaw_std_deg"
            )
        operator = operator.model_copy(
            update={
                "init_max_position_std_m": cfg.initialpose_max_position_std_m,
                "init_max_yaw_std_deg": cfg.initialpose_max_yaw_std_deg,
            }
        )
        pose_sources = {**fusion_config.pose_sources, SOURCE_INITIALPOSE: operator}
        fusion_config = fusion_config.model_copy(
            update={"map_frame": cfg.map_frame, "pose_sources": pose_sources}
        )
        if cfg.map_bundle:
            bundle = MapBundle.open(cfg.map_bundle, verify="none")
            self.origin: GeoOrigin = bundle.origin
            # The map's stated pose uncertainty is a bias BoVW poses share (MapErrorConfig).
            stated = bundle.stated_pose_sigma()
            fusion_config = fusion_config.with_map_error(*stated)
            if any(stated):
                self.get_logger().info(
                    f"map panoramas state a pose sigma of {stated[0]:.2f} m / {stated[1]:.2f} deg: "
                    f"modelled as a bias of {', '.join(fusion_config.map_error.sources)}"
                )
        else:
            self.origin = resolve_origin(None, cfg.origin_lat, cfg.origin_lon, cfg.origin_alt)
        self._clock_ns = (lambda: self.get_clock().now().nanoseconds) if cfg.clock_checks else None
        self.filter = PlanarFusionFilter(fusion_config, origin=self.origin, clock=self._clock_ns)
        self.diagnostics = NodeDiagnostics(self, input_key="measurements_received")
        self._newest_published_ns: int | None = None
        self.odom_history = OdometryHistory(cfg.odom_history_s)
        self._pending_map_odom: PoseEstimate | None = None  # waits for the odometry to reach its stamp
        self.pose_inputs = parse_pose_inputs(cfg.pose_inputs, list(fusion_config.pose_sources))
        self._path = Path()
        self._path.header.frame_id = cfg.map_frame

        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, cfg.output_topic, reliable_qos())
        self.fix_pub = self.create_publisher(NavSatFix, cfg.fix_topic, reliable_qos())
        self.path_pub = self.create_publisher(Path, cfg.path_topic, reliable_qos(1))
        self.odometry_pub = (
            self.create_publisher(Odometry, cfg.odometry_topic, reliable_qos())
            if cfg.odometry_topic
            else None
        )
        self.map_odom_pub = (
            self.create_publisher(TransformStamped, cfg.map_odom_topic, reliable_qos())
            if (cfg.map_odom_topic and cfg.publish_tf)
            else None
        )
        self.tf_broadcaster = (
            TransformBroadcaster(self) if (cfg.publish_tf and TransformBroadcaster) else None
        )
        if cfg.publish_tf and TransformBroadcaster is None:
            self.get_logger().info("tf2_ros is not installed: the map->odom transform is not broadcast")

        guard = self.diagnostics.guard
        for source, topic in self.pose_inputs.items():
            self.create_subscription(
                PoseWithCovarianceStamped,
                topic,
                guard(source, lambda m, source=source: self._on_pose(m, source)),
                reliable_qos(20),
            )
        if cfg.initialpose_topic:
            self.create_subscription(
                PoseWithCovarianceStamped,
                cfg.initialpose_topic,
                guard("initialpose", self._on_initialpose),
                reliable_qos(1),
            )
        self.create_service(Trigger, "~/reset", self._on_reset)
        if cfg.gps_topic:
            self.create_subscription(NavSatFix, cfg.gps_topic, guard("gps", self._on_gps), sensor_qos(10))
        if cfg.odom_topic:
            self.create_subscription(
                Odometry, cfg.odom_topic, guard("odometry", self._on_odom), sensor_qos(20)
            )
        if cfg.imu_topic:
            self.create_subscription(Imu, cfg.imu_topic, guard("imu", self._on_imu), sensor_qos(50))
        inputs = (*self.pose_inputs.values(), cfg.gps_topic, cfg.odom_topic, cfg.imu_topic)
        self.get_logger().info(
            f"fusing {', '.join(t for t in inputs if t)}"
            f" in frame '{cfg.map_frame}' (origin {self.origin.lat_deg:.6f}, {self.origin.lon_deg:.6f})"
        )

    def _set_config(self, config: PoseFusionNodeConfig) -> None:
        self.config = config

    # ---------------------------------------------------------------------------------- inputs
    def _on_pose(self, msg: PoseWithCovarianceStamped, source: str) -> None:
        self.diagnostics.count(f"received_{source}")
        self.diagnostics.count("measurements_received")
        try:
            estimate = pose_msg_to_estimate(msg, source)
        except ValueError as exc:
            self.diagnostics.bad_input(source, str(exc))
            return
        self._apply(self.filter.add_pose(estimate))

    def _restart(self, reason: str) -> None:
        self.filter.reset(reason)
        self._forget_outputs()

    def _forget_outputs(self) -> None:
        """After any reset of the filter: a new path, and nothing of the old state is sent later."""
        self._path.poses.clear()
        self._newest_published_ns = None
        self._pending_map_odom = None
        self.diagnostics.count("resets")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset`` (std_srvs/Trigger): forget the state; the next good fix re-initializes."""
        self._restart("requested")
        response.success, response.message = True, "fusion filter reset"
        self.get_logger().info("fusion filter reset on request")
        return response

    def _on_initialpose(self, msg: PoseWithCovarianceStamped) -> None:
        """Restart the filter at the operator's pose (stamp 0, as some tools send: the newest stamp).

        A pose the restarted filter could not start from (another frame, more uncertain than
        ``initialpose_max_position_std_m`` / ``initialpose_max_yaw_std_deg``) is counted and ignored:
        the running filter goes on."""
        newest = self.filter.diagnostics.newest_stamp_ns
        try:
            estimate = pose_msg_to_estimate(msg, SOURCE_INITIALPOSE)
        except ValueError as exc:
            self.diagnostics.bad_input(SOURCE_INITIALPOSE, str(exc))
            return
        if estimate.stamp_ns == 0:
            stamp = newest if newest is not None else self.get_clock().now().nanoseconds
            estimate = dataclasses.replace(estimate, stamp_ns=stamp)
        trial = PlanarFusionFilter(self.filter.config, origin=self.origin, clock=self._clock_ns)
        tried = trial.add_pose(estimate)
        if tried.status == "rejected" or not trial.initialized:
            reason = tried.reason
            if reason in (None, RejectReason.NOT_INITIALIZED.value):
                limits = self.config.initialpose_max_position_std_m, self.config.initialpose_max_yaw_std_deg
                reason = (
                    f"more uncertain than initialpose_max_position_std_m {limits[0]} m "
                    f"or initialpose_max_yaw_std_deg {limits[1]} deg"
                )
            self.diagnostics.bad_input(SOURCE_INITIALPOSE, f"not used, the filter goes on: {reason}")
            return
        self._restart(SOURCE_INITIALPOSE)
        self._apply(self.filter.add_pose(estimate))
        self.get_logger().info(
            f"restarted at the operator's pose x={estimate.pose.translation[0]:.1f} "
            f"y={estimate.pose.translation[1]:.1f}"
        )

    def _on_gps(self, msg: NavSatFix) -> None:
        self.diagnostics.count("received_gps")
        self.diagnostics.count("measurements_received")
        if msg.status.status < 0:  # STATUS_NO_FIX
            self.diagnostics.count("gps_no_fix")
            return
        fix = GpsFix(
            stamp_to_ns(msg.header.stamp),
            msg.latitude,
            msg.longitude,
            msg.altitude,
            np.asarray(msg.position_covariance, dtype=float),
            int(msg.position_covariance_type),
            int(msg.status.status),
            SOURCE_GPS,
        )
        self._apply(self.filter.add_gps_fix(fix))

    def _on_odom(self, msg: Odometry) -> None:
        self.diagnostics.count("measurements_received")
        stamp_ns = stamp_to_ns(msg.header.stamp)
        twist, cov = msg.twist.twist, np.asarray(msg.twist.covariance, dtype=float).reshape(6, 6)
        if not cov.any():  # sensor_msgs: all zero = unknown, not exact
            cov[0, 0] = self.config.unknown_speed_std_mps**2
            cov[5, 5] = math.radians(self.config.unknown_yaw_rate_std_dps) ** 2
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        if all(math.isfinite(v) for v in (p.x, p.y, p.z, o.x, o.y, o.z, o.w)) and (o.x, o.y, o.z, o.w) != (
            0,
            0,
            0,
            0,
        ):
            self.odom_history.add(stamp_ns, Pose3D.from_xyz_quaternion([p.x, p.y, p.z], [o.x, o.y, o.z, o.w]))
            pending = self._pending_map_odom
            if pending is not None and stamp_ns >= pending.stamp_ns:
                self._publish_map_odom(pending)
        motion = MotionMeasurement(
            stamp_ns,
            SOURCE_ODOMETRY,
            float(twist.linear.x),
            float(cov[0, 0]),
            float(twist.angular.z),
            float(cov[5, 5]),
        )
        self._apply(self.filter.add_motion(motion))

    def _on_imu(self, msg: Imu) -> None:
        self.diagnostics.count("measurements_received")
        cov = np.asarray(msg.angular_velocity_covariance, dtype=float)
        if cov[0] == -1.0:  # sensor_msgs: this message carries no angular velocity
            self.diagnostics.count("imu_without_angular_velocity")
            return
        # All zero: unknown (sensor_msgs), not exact.
        var = float(cov[8]) if cov.any() else math.radians(self.config.unknown_yaw_rate_std_dps) ** 2
        motion = MotionMeasurement(
            stamp_to_ns(msg.header.stamp),
            SOURCE_IMU,
            yaw_rate_rps=float(msg.angular_velocity.z),
            yaw_rate_variance=var,
        )
        self._apply(self.filter.add_motion(motion))

    # ---------------------------------------------------------------------------------- outputs
    def _apply(self, result: UpdateResult) -> None:
        if result.reset:
            self.get_logger().warning(f"fusion reset ({result.reset}); clearing the path")
            self._forget_outputs()
        if result.status == "rejected":
            self.diagnostics.count(f"rejected_{result.source}_{result.reason}")
            return
        newest = self.filter.diagnostics.newest_stamp_ns
        if newest is None or (self._newest_published_ns is not None and newest <= self._newest_published_ns):
            return
        estimate = self.filter.estimate_at(newest)
        if estimate is not None:
            self._publish(estimate)
            self._newest_published_ns = newest

    def _publish(self, estimate: PoseEstimate) -> None:
        cfg = self.config
        pose_msg = estimate_to_pose_msg(estimate)
        self.pose_pub.publish(pose_msg)
        self.fix_pub.publish(estimate_to_navsatfix(estimate, self.origin, cfg.base_frame))
        stamped = PoseStamped(header=pose_msg.header, pose=pose_msg.pose.pose)
        self._path.poses.append(stamped)
        if len(self._path.poses) > cfg.path_max_poses:
            del self._path.poses[: len(self._path.poses) - cfg.path_max_poses]
        self._path.header.stamp = pose_msg.header.stamp
        self.path_pub.publish(self._path)
        self.diagnostics.count("poses_published")
        self.diagnostics.output_rate.tick()
        for key, value in _flatten("filter", self.filter.diagnostics.as_dict()).items():
            self.diagnostics.gauge(key, value)
        if self.odometry_pub is not None:
            self.odometry_pub.publish(self._odometry_msg(pose_msg, estimate))
        if self.tf_broadcaster is not None or self.map_odom_pub is not None:
            self._publish_map_odom(estimate)

    def _odometry_msg(self, pose_msg: PoseWithCovarianceStamped, estimate: PoseEstimate) -> Odometry:
        """The fused pose with the filter's speed and yaw rate (base_link axes; the rest unknown)."""
        msg = Odometry(header=pose_msg.header, child_frame_id=self.config.base_frame, pose=pose_msg.pose)
        info = estimate.info
        msg.twist.twist.linear.x = float(info.get("speed_mps", 0.0))
        msg.twist.twist.angular.z = float(info.get("yaw_rate_rps", 0.0))
        cov = np.diag([UNKNOWN_TWIST_VARIANCE] * 6)
        cov[0, 0] = float(info.get("speed_std_mps", 1e3)) ** 2
        cov[5, 5] = float(info.get("yaw_rate_std_rps", 1e3)) ** 2
        msg.twist.covariance = cov.reshape(-1).tolist()
        return msg

    def _publish_map_odom(self, estimate: PoseEstimate) -> None:
        """map->odom with the odometry at the estimate's stamp, sent once the odometry reaches that stamp
        (the last one stands meanwhile). Without odometry: map->base_link."""
        cfg = self.config
        if cfg.odom_topic:
            self._pending_map_odom = None
            t_odom_base = self.odom_history.at(estimate.stamp_ns)
            if t_odom_base is None:
                newest = self.odom_history.newest_stamp_ns
                if newest is None or newest < estimate.stamp_ns:  # the odometry has not got there yet
                    self._pending_map_odom = estimate
                else:
                    self.diagnostics.count("map_odom_no_odometry_at_stamp")
                return
            t_map_odom, child = map_to_odom(estimate.pose, t_odom_base), cfg.odom_frame
        else:
            t_map_odom, child = estimate.pose, cfg.base_frame
        tf = TransformStamped()
        tf.header.stamp = ns_to_stamp(estimate.stamp_ns)
        tf.header.frame_id = cfg.map_frame
        tf.child_frame_id = child
        tx, ty, tz = (float(v) for v in t_map_odom.translation)
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = tx, ty, tz
        qx, qy, qz, qw = (float(v) for v in t_map_odom.quaternion)
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = qx, qy, qz, qw
        if self.tf_broadcaster is not None:
            self.tf_broadcaster.sendTransform(tf)
        if self.map_odom_pub is not None:
            self.map_odom_pub.publish(tf)


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def main(args: list[str] | None = None) -> int:
    return run_node(PoseFusionNode, args, lifecycle_name="pose_fusion")


if __name__ == "__main__":
    raise SystemExit(main())
