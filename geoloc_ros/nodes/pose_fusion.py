"""``pose_fusion``: fuses the BoVW and PoseNet poses (and consumer GPS, odometry, IMU) with the planar EKF.

Subscribes (all optional but one pose source):
  ``bovw_topic``, ``posenet_topic``   geometry_msgs/PoseWithCovarianceStamped in ``map``
  ``gps_topic``                       sensor_msgs/NavSatFix (consumer GPS)
  ``odom_topic``                      nav_msgs/Odometry (wheel odometry: speed, yaw rate)
  ``imu_topic``                       sensor_msgs/Imu (yaw rate)
Publishes: ``output_topic`` PoseWithCovarianceStamped, ``fix_topic`` NavSatFix, ``path_topic`` nav_msgs/Path,
``/diagnostics``, and the map->odom transform (REP-105) when tf2_ros is installed.

Everything runs on message time: the fused pose is published at the newest measurement stamp, so replay
(``use_sim_time``) and live behave the same. Stamps implausible for the filter clock or the node clock
are rejected and counted (``rejected_<source>_future`` / ``_too_old``), never adopted; a confirmed
time jump (a bag loop) resets the filter and clears the path. Bad messages are counted and skipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from pydantic import Field
from rclpy.node import Node
from sensor_msgs.msg import Imu, NavSatFix

from geoloc_ros.config import StrictModel
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
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.mapping.origin import resolve_origin
from geoloc_ros.nodes.common import NodeDiagnostics, declare_config, reliable_qos, run_node, sensor_qos
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


class PoseFusionNodeConfig(StrictModel):
    map_bundle: str = Field("", description="map bundle whose origin defines the map frame (or set origin_*)")
    origin_lat: float | None = Field(None, description="map origin latitude (deg) when no bundle is given")
    origin_lon: float | None = Field(None, description="map origin longitude (deg) when no bundle is given")
    origin_alt: float = Field(0.0, description="map origin altitude (m)")
    fusion_config: str = Field("", description="YAML of geoloc_ros.fusion.FusionConfig; empty = defaults")
    bovw_topic: str = Field("/geoloc/bovw/pose", description="BoVW poses ('' to ignore)")
    posenet_topic: str = Field("/geoloc/posenet/pose", description="PoseNet poses ('' to ignore)")
    posenet_source: str = Field(SOURCE_POSENET, description="fusion source name of posenet_topic")
    gps_topic: str = Field("/gps/fix", description="consumer GPS NavSatFix ('' to ignore)")
    odom_topic: str = Field("", description="nav_msgs/Odometry for speed and yaw rate ('' to ignore)")
    imu_topic: str = Field("", description="sensor_msgs/Imu for yaw rate ('' to ignore)")
    output_topic: str = Field("/geoloc/fused/pose", description="fused PoseWithCovarianceStamped")
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
        self.config = declare_config(self, PoseFusionNodeConfig)
        cfg = self.config
        fusion_config = FusionConfig.load(cfg.fusion_config) if cfg.fusion_config else FusionConfig()
        fusion_config = fusion_config.model_copy(update={"map_frame": cfg.map_frame})
        self.origin: GeoOrigin = resolve_origin(
            cfg.map_bundle, cfg.origin_lat, cfg.origin_lon, cfg.origin_alt
        )
        clock = (lambda: self.get_clock().now().nanoseconds) if cfg.clock_checks else None
        self.filter = PlanarFusionFilter(fusion_config, origin=self.origin, clock=clock)
        self.diagnostics = NodeDiagnostics(self)
        self._newest_published_ns: int | None = None
        self._latest_odom: tuple[int, Pose3D] | None = None
        self._path = Path()
        self._path.header.frame_id = cfg.map_frame

        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, cfg.output_topic, reliable_qos())
        self.fix_pub = self.create_publisher(NavSatFix, cfg.fix_topic, reliable_qos())
        self.path_pub = self.create_publisher(Path, cfg.path_topic, reliable_qos(1))
        self.tf_broadcaster = (
            TransformBroadcaster(self) if (cfg.publish_tf and TransformBroadcaster) else None
        )
        if cfg.publish_tf and TransformBroadcaster is None:
            self.get_logger().info("tf2_ros is not installed: the map->odom transform is not broadcast")

        guard = self.diagnostics.guard
        if cfg.bovw_topic:
            self.create_subscription(
                PoseWithCovarianceStamped,
                cfg.bovw_topic,
                guard(SOURCE_BOVW, lambda m: self._on_pose(m, SOURCE_BOVW)),
                reliable_qos(20),
            )
        if cfg.posenet_topic:
            self.create_subscription(
                PoseWithCovarianceStamped,
                cfg.posenet_topic,
                guard(cfg.posenet_source, lambda m: self._on_pose(m, cfg.posenet_source)),
                reliable_qos(20),
            )
        if cfg.gps_topic:
            self.create_subscription(NavSatFix, cfg.gps_topic, guard("gps", self._on_gps), sensor_qos(10))
        if cfg.odom_topic:
            self.create_subscription(
                Odometry, cfg.odom_topic, guard("odometry", self._on_odom), sensor_qos(20)
            )
        if cfg.imu_topic:
            self.create_subscription(Imu, cfg.imu_topic, guard("imu", self._on_imu), sensor_qos(50))
        inputs = (cfg.bovw_topic, cfg.posenet_topic, cfg.gps_topic, cfg.odom_topic, cfg.imu_topic)
        self.get_logger().info(
            f"fusing {', '.join(t for t in inputs if t)}"
            f" in frame '{cfg.map_frame}' (origin {self.origin.lat_deg:.6f}, {self.origin.lon_deg:.6f})"
        )

    # ---------------------------------------------------------------------------------- inputs
    def _bad_input(self, kind: str, reason: str) -> None:
        self.diagnostics.bad_input(kind, reason)

    def _on_pose(self, msg: PoseWithCovarianceStamped, source: str) -> None:
        self.diagnostics.count(f"received_{source}")
        try:
            estimate = pose_msg_to_estimate(msg, source)
        except ValueError as exc:
            self._bad_input(source, str(exc))
            return
        self._apply(self.filter.add_pose(estimate))

    def _on_gps(self, msg: NavSatFix) -> None:
        self.diagnostics.count("received_gps")
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
        stamp_ns = stamp_to_ns(msg.header.stamp)
        twist, cov = msg.twist.twist, np.asarray(msg.twist.covariance, dtype=float).reshape(6, 6)
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        if all(math.isfinite(v) for v in (p.x, p.y, p.z, o.x, o.y, o.z, o.w)) and (o.x, o.y, o.z, o.w) != (
            0,
            0,
            0,
            0,
        ):
            self._latest_odom = (stamp_ns, Pose3D.from_xyz_quaternion([p.x, p.y, p.z], [o.x, o.y, o.z, o.w]))
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
        var = float(msg.angular_velocity_covariance[8])
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
            self._path.poses.clear()
            self._newest_published_ns = None
            self.diagnostics.count("resets")
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
        if self.tf_broadcaster is not None:
            self._broadcast_tf(self.tf_broadcaster, estimate)

    def _broadcast_tf(self, broadcaster: Any, estimate: PoseEstimate) -> None:
        cfg = self.config
        if self._latest_odom is not None:
            t_map_odom = estimate.pose.compose(self._latest_odom[1].inverse())
            child = cfg.odom_frame
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
        broadcaster.sendTransform(tf)


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def main(args: list[str] | None = None) -> int:
    return run_node(PoseFusionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
