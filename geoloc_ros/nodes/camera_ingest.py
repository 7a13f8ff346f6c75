"""``camera_ingest``: raw or compressed camera frames -> rectified frames in the processing camera model.

Subscribes to ``image_topic`` (sensor_msgs/Image, or CompressedImage when the topic ends in
``/compressed`` or ``compressed`` is true) and ``camera_info_topic`` with sensor-data QoS; undistorts
and resizes every frame to the processing model (``processing_width`` / ``processing_hfov_deg``, by
default the input model without distortion), optionally throttles by message time, and republishes
``output_image_topic`` (bgr8) + ``output_info_topic`` with the input stamp.

Without a camera driver, ``source`` names a video file or an image folder: frames are published at
``source_rate_hz`` with the node clock's stamps, using ``camera_yaml`` for the intrinsics.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.camera.rectify import Rectifier, processing_camera_for
from geoloc_ros.camera.sources import iter_frames
from geoloc_ros.config import StrictModel
from geoloc_ros.errors import ConfigError, GeolocError
from geoloc_ros.io.images import array_to_image_fields, message_to_array
from geoloc_ros.nodes.common import (
    NodeDiagnostics,
    declare_config,
    is_compressed_topic,
    run_node,
    sensor_qos,
    watch_dynamic_parameters,
)
from geoloc_ros.nodes.messages import stamp_to_ns


class CameraIngestConfig(StrictModel):
    image_topic: str = Field("/camera/image_raw", description="raw (or compressed) input image topic")
    compressed: bool = Field(
        False, description="input is sensor_msgs/CompressedImage (implied by a /compressed topic)"
    )
    camera_info_topic: str = Field("/camera/camera_info", description="input CameraInfo topic")
    camera_yaml: str = Field("", description="camera calibration YAML used when no CameraInfo arrives")
    output_image_topic: str = Field("/geoloc/camera/image_rect", description="rectified image (bgr8)")
    output_info_topic: str = Field(
        "/geoloc/camera/camera_info", description="CameraInfo of the rectified image"
    )
    processing_width: int = Field(0, ge=0, le=8192, description="output width in pixels (0 = input width)")
    processing_hfov_deg: float = Field(
        0.0, ge=0.0, lt=180.0, description="output horizontal FOV (0 = input's)"
    )
    max_rate_hz: float = Field(0.0, ge=0.0, description="throttle on message time (0 = every frame)")
    source: str = Field("", description="video file or image folder to publish instead of subscribing")
    source_rate_hz: float = Field(20.0, gt=0.0, le=1000.0, description="publishing rate of `source` frames")
    source_loop: bool = Field(False, description="restart `source` at its end")
    frame_id: str = Field("camera_optical", description="frame_id of `source` frames")


# Read per frame: safe to change while running (``ros2 param set``).
DYNAMIC_PARAMETERS = ("max_rate_hz",)


class CameraIngestNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("camera_ingest", **node_kwargs)
        self.config = declare_config(self, CameraIngestConfig, DYNAMIC_PARAMETERS)
        watch_dynamic_parameters(
            self, CameraIngestConfig, lambda: self.config, self._set_config, DYNAMIC_PARAMETERS
        )
        cfg = self.config
        self.diagnostics = NodeDiagnostics(self, output_key="frames_published")
        self._yaml_camera = PinholeCamera.load(cfg.camera_yaml) if cfg.camera_yaml else None
        self._info_camera: PinholeCamera | None = None
        self._rectifier: Rectifier | None = None
        self._last_output_ns: int | None = None
        self.image_pub = self.create_publisher(Image, cfg.output_image_topic, sensor_qos(1))
        self.info_pub = self.create_publisher(CameraInfo, cfg.output_info_topic, sensor_qos(1))
        if cfg.source:
            if self._yaml_camera is None:
                raise ConfigError("camera_ingest: `source` needs `camera_yaml` for the intrinsics")
            self._frames = iter_frames(cfg.source, loop=cfg.source_loop)
            self._source_timer = self.create_timer(
                1.0 / cfg.source_rate_hz, self.diagnostics.guard("source", self._on_source_tick)
            )
            self.get_logger().info(f"publishing frames of {cfg.source} at {cfg.source_rate_hz} Hz")
            return
        compressed = cfg.compressed or is_compressed_topic(self, cfg.image_topic)
        msg_type = CompressedImage if compressed else Image
        guard = self.diagnostics.guard
        images = self.create_subscription(
            msg_type, cfg.image_topic, guard("image", self._on_image), sensor_qos(1)
        )
        self.create_subscription(
            CameraInfo, cfg.camera_info_topic, guard("camera_info", self._on_info), sensor_qos(5)
        )
        self.get_logger().info(
            f"rectifying {images.topic_name} ({msg_type.__name__}) -> {self.image_pub.topic_name}"
        )

    # ------------------------------------------------------------------------------ camera models
    def _on_info(self, msg: CameraInfo) -> None:
        """A new camera model replaces the rectifier only once both are built from validated input:
        a bad CameraInfo is counted and the previous model stays in use."""
        try:
            camera = PinholeCamera.from_camera_info(msg)
            if camera != self._info_camera:
                rectifier = self._build_rectifier(camera)
                self._info_camera, self._rectifier = camera, rectifier
        except GeolocError as exc:
            self.diagnostics.bad_input("camera_info", str(exc))

    def _build_rectifier(self, source: PinholeCamera) -> Rectifier:
        cfg = self.config
        target = processing_camera_for(source, cfg.processing_width or None, cfg.processing_hfov_deg or None)
        rectifier = Rectifier(source, target)
        self.get_logger().info(
            f"processing camera {target.width}x{target.height}, "
            f"fx={target.fx:.1f}, hfov={target.hfov_deg:.1f} deg"
        )
        return rectifier

    def _rectifier_for(self) -> Rectifier | None:
        """The rectifier of the newest valid CameraInfo, else of ``camera_yaml``, else None."""
        if self._rectifier is None and self._yaml_camera is not None:
            self._rectifier = self._build_rectifier(self._yaml_camera)
        return self._rectifier

    # ------------------------------------------------------------------------------ frames
    def _set_config(self, config: CameraIngestConfig) -> None:
        self.config = config

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.diagnostics.count("frames_received")
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._throttled(stamp_ns):
            self.diagnostics.count("frames_throttled")
            return
        rectifier = self._rectifier_for()
        if rectifier is None:
            self.diagnostics.count("frames_waiting_for_camera_info")
            self.get_logger().warning(
                "no CameraInfo yet (and no camera_yaml): frame skipped", throttle_duration_sec=5.0
            )
            return
        started = time.perf_counter()
        try:
            image = message_to_array(msg, "bgr8")
            rectified = rectifier(image)
        except GeolocError as exc:
            self.diagnostics.bad_input("image", str(exc))
            return
        self._publish(rectified, msg.header, rectifier.target)
        self.diagnostics.gauge("latency_ms", round(1000 * (time.perf_counter() - started), 2))

    def _on_source_tick(self) -> None:
        try:
            frame = next(self._frames)
        except StopIteration:
            self.get_logger().info("end of the frame source")
            self._source_timer.cancel()
            return
        rectifier = self._rectifier_for()
        assert rectifier is not None  # camera_yaml is required with `source`
        self.diagnostics.count("frames_received")
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.config.frame_id
        try:
            rectified = rectifier(frame)
        except GeolocError as exc:
            self.diagnostics.bad_input("image", str(exc))
            return
        self._publish(rectified, header, rectifier.target)

    def _throttled(self, stamp_ns: int) -> bool:
        rate = self.config.max_rate_hz
        if rate <= 0 or self._last_output_ns is None:
            return False
        if stamp_ns < self._last_output_ns:  # time went backwards (bag loop): start over
            self._last_output_ns = None
            return False
        return stamp_ns - self._last_output_ns < 1e9 / rate

    def _publish(self, image: Any, header: Any, camera: PinholeCamera) -> None:
        out = Image(
            header=header, **{k: v for k, v in array_to_image_fields(image, "bgr8").items() if k != "data"}
        )
        out.data = image.tobytes() if image.flags["C_CONTIGUOUS"] else image.copy().tobytes()
        info = CameraInfo(header=header, **camera.camera_info_fields())
        self.image_pub.publish(out)
        self.info_pub.publish(info)
        self._last_output_ns = stamp_to_ns(header.stamp)
        self.diagnostics.count("frames_published")
        self.diagnostics.output_rate.tick()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraIngestNode, args, lifecycle_name="camera_ingest")


if __name__ == "__main__":
    raise SystemExit(main())
