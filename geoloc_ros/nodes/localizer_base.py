"""What the image localizer nodes share: rectified frames in, newest-frame processing, poses out.

A subclass implements :meth:`ImageLocalizerNode.localize` (image -> estimates) on top of the core;
this base handles the subscriptions (sensor-data QoS, newest frame only), frame checks, the
output messages (PoseWithCovarianceStamped in ``map``, NavSatFix), per-frame latency, and
diagnostics. A bad message is logged (throttled), counted and skipped; the node keeps running.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from pydantic import Field
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.camera.validation import check_frame
from geoloc_ros.config import StrictModel
from geoloc_ros.errors import GeolocError
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.frames import CameraMounting, ExtrinsicsResolver
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.images import message_to_array
from geoloc_ros.localize.localizer import MAX_REORDER_NS
from geoloc_ros.nodes.common import (
    LatestFrameWorker,
    NodeDiagnostics,
    declare_config,
    is_compressed_topic,
    reliable_qos,
    sensor_qos,
    watch_dynamic_parameters,
)
from geoloc_ros.nodes.messages import estimate_to_navsatfix, estimate_to_pose_msg, stamp_to_ns


class LocalizerIOConfig(StrictModel):
    """Topics and frames common to the localizer nodes."""

    image_topic: str = Field("/geoloc/camera/image_rect", description="rectified image from camera_ingest")
    camera_info_topic: str = Field("/geoloc/camera/camera_info", description="CameraInfo of image_topic")
    camera_mounting: str = Field(
        "", description="camera_mounting.yaml (base_link -> camera); empty = at base_link"
    )
    extrinsics: Literal["yaml", "tf"] = Field(
        "yaml",
        description="camera mounting from 'tf' (base_frame -> the image's frame_id; camera_mounting as "
        "fallback) or from the 'yaml' camera_mounting",
    )
    map_frame: str = Field("map", description="frame of the published poses")
    base_frame: str = Field("base_link", description="vehicle frame: TF extrinsics parent")


try:  # tf2_ros is part of a ROS installation but not of the PyPI wheels
    import tf2_ros
    from rclpy.time import Time
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None


@dataclass
class Frame:
    stamp_ns: int
    image: np.ndarray
    camera: PinholeCamera | None
    received_at: float  # time.monotonic() when the message arrived (for latency)
    frame_id: str = ""


class ImageLocalizerNode(Node):
    """Base class; subclasses set ``source`` and ``config_model`` (a StrictModel with ``io``,
    ``pose_topic`` and ``fix_topic`` fields), implement :meth:`localize`, and call :meth:`start`
    at the end of their ``__init__``."""

    source = "localizer"
    config_model: type[StrictModel] = StrictModel
    # Parameters safe to change at run time (``ros2 param set``); see :meth:`apply_config`.
    dynamic_parameters: tuple[str, ...] = ()
    # Started by :meth:`start`; None before (and in a node whose set-up failed).
    worker: LatestFrameWorker[Frame] | None = None

    def __init__(self, name: str, **node_kwargs: Any) -> None:
        super().__init__(name, **node_kwargs)
        config: Any = declare_config(self, self.config_model, self.dynamic_parameters)
        self.config = config
        if self.dynamic_parameters:
            watch_dynamic_parameters(
                self, self.config_model, lambda: self.config, self.apply_config, self.dynamic_parameters
            )
        self.io: LocalizerIOConfig = config.io
        self.mounting = (
            CameraMounting.load(self.io.camera_mounting) if self.io.camera_mounting else CameraMounting()
        )
        self.extrinsics = ExtrinsicsResolver(self.io.extrinsics, self.io.camera_mounting, self.io.base_frame)
        self._applied_extrinsics: Pose3D | None = self.extrinsics.static
        self._tf_buffer: Any = None
        if self.io.extrinsics == "tf" and tf2_ros is not None:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        elif self.io.extrinsics == "tf":
            self.get_logger().warning(
                "io.extrinsics is 'tf' but tf2_ros is not installed: using io.camera_mounting"
            )
        self.diagnostics = NodeDiagnostics(self)
        self._camera: PinholeCamera | None = None
        self._camera_lock = threading.Lock()
        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, config.pose_topic, reliable_qos(10))
        fix_topic = config.fix_topic
        self.fix_pub = self.create_publisher(NavSatFix, fix_topic, reliable_qos(10)) if fix_topic else None
        self.origin: GeoOrigin | None = None  # set by subclasses that know the map origin
        self._last_stamp_ns: int | None = None  # of the last frame handed to localize()

    def start(self) -> None:
        """Subscribe once the subclass is fully initialised (model loaded, warmed up)."""
        self.worker = LatestFrameWorker(
            self._process, self._on_worker_error, name=f"{self.get_name()}-worker"
        )
        compressed = is_compressed_topic(self, self.io.image_topic)
        guard = self.diagnostics.guard
        self.create_subscription(
            CompressedImage if compressed else Image,
            self.io.image_topic,
            guard("image", self._on_image),
            sensor_qos(1),
        )
        self.create_subscription(
            CameraInfo, self.io.camera_info_topic, guard("camera_info", self._on_info), sensor_qos(5)
        )

    # ------------------------------------------------------------------------------ inputs
    def _on_info(self, msg: CameraInfo) -> None:
        try:
            camera = PinholeCamera.from_camera_info(msg)
        except GeolocError as exc:
            self.diagnostics.bad_input("camera_info", str(exc))
            return
        with self._camera_lock:
            self._camera = camera

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.diagnostics.count("frames_received")
        try:
            image = message_to_array(msg, "bgr8")
        except GeolocError as exc:
            self.diagnostics.bad_input("image", str(exc))
            return
        with self._camera_lock:
            camera = self._camera
        assert self.worker is not None
        self.worker.submit(
            Frame(stamp_to_ns(msg.header.stamp), image, camera, time.monotonic(), msg.header.frame_id)
        )
        self.diagnostics.gauge("frames_dropped", self.worker.dropped)

    def _on_worker_error(self, frame: Frame, exc: BaseException) -> None:
        self.diagnostics.record_failure("image", exc)

    # ------------------------------------------------------------------------------ processing
    def localize(self, image: np.ndarray, camera: PinholeCamera | None, stamp_ns: int) -> list[PoseEstimate]:
        raise NotImplementedError

    def _lookup_tf(self, parent: str, child: str) -> Pose3D | None:
        try:
            tf = self._tf_buffer.lookup_transform(parent, child, Time()).transform
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException):
            return None
        t, q = tf.translation, tf.rotation
        return Pose3D.from_xyz_quaternion([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])

    def apply_config(self, config: Any) -> None:
        """A run-time change of the ``dynamic_parameters`` (validated); subclasses pass it on."""
        self.config = config

    def apply_extrinsics(self, t_base_optical: Pose3D) -> None:
        """Use a new camera mounting (from TF); subclasses hand it to their localizer."""
        raise NotImplementedError

    def _update_extrinsics(self, frame_id: str) -> None:
        lookup = self._lookup_tf if self._tf_buffer is not None else None
        try:
            t_base_optical, origin = self.extrinsics.resolve(frame_id, lookup)
        except GeolocError:
            self.diagnostics.count("frames_without_extrinsics")
            raise
        if t_base_optical is not self._applied_extrinsics:
            self.apply_extrinsics(t_base_optical)
            self._applied_extrinsics = t_base_optical
            self.get_logger().info(f"camera extrinsics from {origin}")

    def _process(self, frame: Frame) -> None:
        last = self._last_stamp_ns
        # A frame stamped at or at most MAX_REORDER_NS before the last one localized (the BoVW core's
        # own rule, bounds included) is a duplicate or a reordered message: skipped before any work,
        # since it would restart PoseNet's temporal filter. Further back, time itself went back (a bag
        # loop): the frame goes through.
        if last is not None and last - MAX_REORDER_NS <= frame.stamp_ns <= last:
            self.diagnostics.count("frames_out_of_order")
            return
        check_frame(frame.image, frame.camera)
        self._update_extrinsics(frame.frame_id)
        started = time.perf_counter()
        self._last_stamp_ns = frame.stamp_ns
        estimates = self.localize(frame.image, frame.camera, frame.stamp_ns)
        self.diagnostics.gauge("processing_ms", round(1000 * (time.perf_counter() - started), 1))
        self.diagnostics.gauge("latency_ms", round(1000 * (time.monotonic() - frame.received_at), 1))
        if not estimates:
            self.diagnostics.count("frames_not_localized")
        for estimate in estimates:
            self.publish_estimate(estimate)

    def publish_estimate(self, estimate: PoseEstimate, publisher: Any = None) -> None:
        msg = estimate_to_pose_msg(estimate)
        msg.header.frame_id = self.io.map_frame
        (publisher or self.pose_pub).publish(msg)
        if publisher is None:
            if self.fix_pub is not None and self.origin is not None:
                self.fix_pub.publish(estimate_to_navsatfix(estimate, self.origin, self.io.base_frame))
            self.diagnostics.count("poses_published")
            self.diagnostics.output_rate.tick()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
