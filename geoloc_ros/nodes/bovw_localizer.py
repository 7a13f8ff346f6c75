"""``bovw_localizer``: BoVW retrieval + PnP-RANSAC against a map bundle, on the newest rectified frame.

Subscribes (sensor-data QoS, newest frame only; see :class:`ImageLocalizerNode`) to the rectified
image and its CameraInfo from ``camera_ingest``, and optionally to a consumer GPS fix
(``gps_topic``, NavSatFix) used as a position prior for global re-localization. Publishes, stamped
with the image's stamp:

- ``pose_topic`` (``/geoloc/bovw/pose``): ``PoseWithCovarianceStamped`` of ``base_link`` in ``map``
  with the full 6x6 covariance (x, y, z, rot x, rot y, rot z): see :mod:`geoloc_ros.localize.covariance`;
- ``fix_topic`` (``/geoloc/bovw/fix``): the same estimate as a ``NavSatFix``;
- ``matched_views_topic`` (``/geoloc/bovw/matched_views``): a ``MarkerArray`` with an arrow at each
  reference view that supports the pose (its camera position, pointing along its optical axis),
  coloured from red (few inliers) to green (many), and a line from it to the estimate;
- ``/diagnostics``: rate, latency, processing time and its stages, inliers, mode, frames dropped,
  bad inputs.

**Camera model.** The map's views are distortion-free images in the bundle's camera model; the
frames should arrive in the same model: configure ``camera_ingest``'s processing camera to equal
the map camera (``geoloc map info`` prints it; size and intrinsics). Frames in another
distortion-free model are resampled onto the map camera here (one extra remap per frame), and a
frame without CameraInfo is assumed to be in the map camera's model.

A missing or corrupt bundle stops the node at start-up with a clear error (``run_node`` prints it
and exits with status 1). Bad frames are logged (throttled), counted in diagnostics and skipped.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import numpy as np
from geometry_msgs.msg import Point, PoseWithCovarianceStamped
from pydantic import Field
from sensor_msgs.msg import NavSatFix
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel
from geoloc_ros.errors import GeolocError
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.frames import body_pose_from_optical
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.geometry.sources import SOURCE_BOVW
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.localize.localizer import LocalizationResult, Localizer, PositionPrior
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.nodes.common import reliable_qos, run_node, sensor_qos
from geoloc_ros.nodes.localizer_base import ImageLocalizerNode, LocalizerIOConfig
from geoloc_ros.nodes.messages import ns_to_stamp, pose_msg_to_estimate, stamp_to_ns

# NavSatFix.position_covariance_type values that carry a usable covariance.
_KNOWN_COVARIANCE = (
    NavSatFix.COVARIANCE_TYPE_APPROXIMATED,
    NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN,
    NavSatFix.COVARIANCE_TYPE_KNOWN,
)


class BovwNodeConfig(StrictModel):
    map_bundle: str = Field(description="map bundle directory (geoloc map build)")
    verify: Literal["full", "sizes", "none"] = Field(
        "full", description="bundle check at start-up: full (checksums), sizes, or none"
    )
    pose_topic: str = Field("/geoloc/bovw/pose", description="PoseWithCovarianceStamped output")
    fix_topic: str = Field("/geoloc/bovw/fix", description="NavSatFix output (empty: none)")
    matched_views_topic: str = Field(
        "/geoloc/bovw/matched_views",
        description="MarkerArray of the supporting reference views (empty: none)",
    )
    gps_topic: str = Field("", description="consumer GPS NavSatFix used as a position prior (empty: none)")
    gps_max_age_s: float = Field(1.0, gt=0.0, description="older GPS fixes are not used")
    initialpose_topic: str = Field(
        "/initialpose",
        description="operator pose (RViz 2D Pose Estimate): restarts tracking and searches around it",
    )
    marker_scale_m: float = Field(2.0, gt=0.0, description="length of the matched-view arrows")
    localizer: LocalizerConfig = Field(default_factory=LocalizerConfig)
    io: LocalizerIOConfig = LocalizerIOConfig()


def _inlier_colour(inliers: int, most: int) -> tuple[float, float, float]:
    share = min(1.0, inliers / max(most, 1))
    return 1.0 - share, share, 0.1


class BovwLocalizerNode(ImageLocalizerNode):
    source = SOURCE_BOVW
    config_model = BovwNodeConfig
    # The acceptance thresholds are read per frame: safe to change while running.
    dynamic_parameters = (
        "gps_max_age_s",
        "localizer.rejection.min_inliers",
        "localizer.rejection.min_inlier_ratio",
        "localizer.rejection.max_jump_m",
        "localizer.rejection.gps_gate_sigmas",
    )

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("bovw_localizer", **node_kwargs)
        cfg: BovwNodeConfig = self.config
        started = time.perf_counter()
        self.bundle = MapBundle.open(cfg.map_bundle, verify=cfg.verify)
        self.origin = self.bundle.origin
        self.localizer = Localizer(self.bundle, cfg.localizer, self.mounting)
        self._input_camera: PinholeCamera | None = None
        self._gps_prior: PositionPrior | None = None
        self._gps_lock = threading.Lock()
        if cfg.gps_topic:
            self.create_subscription(
                NavSatFix, cfg.gps_topic, self.diagnostics.guard("gps", self._on_gps), sensor_qos(5)
            )
        # An operator's pose: the search prior until the next successful localization.
        self._operator_prior: PositionPrior | None = None
        self._reset_requested = False
        if cfg.initialpose_topic:
            self.create_subscription(
                PoseWithCovarianceStamped,
                cfg.initialpose_topic,
                self.diagnostics.guard("initialpose", self._on_initialpose),
                reliable_qos(1),
            )
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.markers_pub = (
            self.create_publisher(MarkerArray, cfg.matched_views_topic, reliable_qos(5))
            if cfg.matched_views_topic
            else None
        )
        self.get_logger().info(
            f"map {self.bundle.path}: {self.bundle.n_views} views, camera {self.bundle.camera.width}x"
            f"{self.bundle.camera.height} fx {self.bundle.camera.fx:.2f} "
            f"(ready in {time.perf_counter() - started:.1f} s)"
        )
        self.diagnostics.gauge("map_views", self.bundle.n_views)
        self.start()

    # ------------------------------------------------------------------------------ inputs
    def _on_gps(self, msg: NavSatFix) -> None:
        if int(msg.status.status) < 0:
            self.diagnostics.count("gps_no_fix")
            return
        if int(msg.position_covariance_type) not in _KNOWN_COVARIANCE:  # no search radius from it
            self.diagnostics.count("gps_unknown_covariance")
            return
        try:
            prior = PositionPrior.from_geodetic(
                stamp_to_ns(msg.header.stamp),
                msg.latitude,
                msg.longitude,
                msg.altitude,
                np.asarray(msg.position_covariance, dtype=float),
                self.bundle.origin,
            )
        except GeolocError as exc:
            self.diagnostics.bad_input("gps", str(exc))
            return
        with self._gps_lock:
            self._gps_prior = prior

    def _on_initialpose(self, msg: PoseWithCovarianceStamped) -> None:
        if msg.header.frame_id != self.io.map_frame:
            self.diagnostics.bad_input(
                "initialpose", f"frame '{msg.header.frame_id}', expected '{self.io.map_frame}'"
            )
            return
        try:
            estimate = pose_msg_to_estimate(msg, "initialpose")
            prior = PositionPrior(
                estimate.stamp_ns, estimate.pose.translation[:2], estimate.covariance[:2, :2]
            )
        except (ValueError, GeolocError) as exc:
            self.diagnostics.bad_input("initialpose", str(exc))
            return
        with self._gps_lock:
            self._operator_prior = prior
            self._reset_requested = True
        self.diagnostics.count("initialposes")
        x, y = prior.xy
        self.get_logger().info(f"searching around the operator's pose x={x:.1f} y={y:.1f}")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset`` (std_srvs/Trigger): forget the tracked pose; the next frame searches the whole map."""
        with self._gps_lock:
            self._operator_prior = None
            self._reset_requested = True
        response.success, response.message = True, "tracking reset: the next frame searches the whole map"
        return response

    def _prior_at(self, stamp_ns: int) -> PositionPrior | None:
        with self._gps_lock:
            if self._operator_prior is not None:
                return self._operator_prior
            prior = self._gps_prior
        if prior is None or abs(stamp_ns - prior.stamp_ns) > self.config.gps_max_age_s * 1e9:
            return None
        return prior

    # ------------------------------------------------------------------------------ processing
    def apply_extrinsics(self, t_base_optical: Pose3D) -> None:
        self.localizer.set_base_to_optical(t_base_optical)

    def apply_config(self, config: Any) -> None:
        super().apply_config(config)
        self.localizer.config = config.localizer

    def localize(self, image: np.ndarray, camera: PinholeCamera | None, stamp_ns: int) -> list[PoseEstimate]:
        if camera is not None and camera != self._input_camera:
            self._input_camera = camera
            if camera.is_distorted:
                self.get_logger().warning(
                    "camera_info is distorted: frames should come rectified from camera_ingest; "
                    "undistorting here",
                    throttle_duration_sec=30.0,
                )
            self.localizer.set_input_camera(camera)
        with self._gps_lock:
            reset, self._reset_requested = self._reset_requested, False
        if reset:
            self.localizer.reset()
        result = self.localizer.localize(image, stamp_ns, self._prior_at(stamp_ns))
        if result.estimate is not None:
            with self._gps_lock:
                self._operator_prior = None
        self._report(result)
        if result.estimate is not None and self.markers_pub is not None:
            self.markers_pub.publish(self._markers(result, result.estimate))
        return [result.estimate] if result.estimate is not None else []

    def _report(self, result: LocalizationResult) -> None:
        d = self.diagnostics
        t = result.timings
        d.gauge("mode", result.mode)
        d.gauge("status", result.status)
        d.gauge("inliers", result.n_inliers)
        d.gauge("matches", result.n_matches)
        d.gauge("candidates", len(result.candidates))
        for stage, value in (
            ("features", t.features_ms),
            ("retrieval", t.retrieval_ms),
            ("matching", t.matching_ms),
            ("ransac", t.ransac_ms),
        ):
            d.gauge(f"{stage}_ms", round(value, 1))
        if result.estimate is None:
            d.count(f"rejected_{result.status}")

    def _markers(self, result: LocalizationResult, estimate: PoseEstimate) -> MarkerArray:
        cfg: BovwNodeConfig = self.config
        stamp = ns_to_stamp(estimate.stamp_ns)
        clear = Marker(action=Marker.DELETEALL)
        clear.header.frame_id = self.io.map_frame
        markers = [clear]
        most = max(result.support.values(), default=1)
        target = estimate.position
        for k, (view, inliers) in enumerate(sorted(result.support.items())):
            body = body_pose_from_optical(self.bundle.views.pose(view))
            r, g, b = _inlier_colour(inliers, most)
            arrow = Marker(ns="matched_views", id=2 * k, type=Marker.ARROW, action=Marker.ADD)
            arrow.header.frame_id, arrow.header.stamp = self.io.map_frame, stamp
            p, q = body.translation, body.quaternion
            arrow.pose.position.x, arrow.pose.position.y, arrow.pose.position.z = (float(v) for v in p)
            o = arrow.pose.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in q)
            arrow.scale.x, arrow.scale.y, arrow.scale.z = cfg.marker_scale_m, 0.25, 0.25
            arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = r, g, b, 0.9
            arrow.text = f"view {view}: {inliers} inliers"
            line = Marker(ns="matched_views_links", id=2 * k + 1, type=Marker.LINE_LIST, action=Marker.ADD)
            line.header.frame_id, line.header.stamp = self.io.map_frame, stamp
            line.pose.orientation.w = 1.0
            line.scale.x = 0.05
            line.color.r, line.color.g, line.color.b, line.color.a = r, g, b, 0.6
            line.points = [
                Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                Point(x=float(target[0]), y=float(target[1]), z=float(target[2])),
            ]
            markers += [arrow, line]
        return MarkerArray(markers=markers)


def main(args: list[str] | None = None) -> int:
    return run_node(BovwLocalizerNode, args, lifecycle_name="bovw_localizer")


if __name__ == "__main__":
    raise SystemExit(main())
