"""camera_ingest on real rclpy topics: rectifies, keeps stamps, survives corrupt frames."""

import numpy as np
import pytest

pytestmark = pytest.mark.ros

RAW = dict(
    width=320, height=240, fx=280.0, fy=280.0, cx=161.0, cy=119.0, distortion=(-0.2, 0.05, 0.0, 0.0, 0.0)
)


def test_rectifies_and_survives_bad_frames(ros_context, spin_until):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from geoloc_ros.camera import PinholeCamera
    from geoloc_ros.io.images import array_to_image_fields, image_msg_to_array
    from geoloc_ros.nodes.camera_ingest import CameraIngestNode
    from geoloc_ros.nodes.common import sensor_qos

    raw_cam = PinholeCamera(**RAW)
    node = CameraIngestNode(
        context=ros_context,
        parameter_overrides=[Parameter("processing_width", value=160), Parameter("max_rate_hz", value=10.0)],
    )
    helper = Node("ingest_test_helper", context=ros_context)
    image_pub = helper.create_publisher(Image, "/camera/image_raw", sensor_qos(1))
    info_pub = helper.create_publisher(CameraInfo, "/camera/camera_info", sensor_qos(1))
    images, infos = [], []
    helper.create_subscription(Image, "/geoloc/camera/image_rect", images.append, sensor_qos(10))
    helper.create_subscription(CameraInfo, "/geoloc/camera/camera_info", infos.append, sensor_qos(10))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)

    def frame(stamp_ns, encoding="bgr8"):
        rng = np.random.default_rng(stamp_ns % 1000)
        msg = Image(
            **{
                k: v
                for k, v in array_to_image_fields(
                    rng.integers(0, 255, (240, 320, 3), np.uint8), "bgr8"
                ).items()
            }
        )
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.encoding = encoding
        return msg

    info = CameraInfo(**raw_cam.camera_info_fields())
    try:
        assert spin_until(
            executor,
            lambda: image_pub.get_subscription_count() > 0 and node.image_pub.get_subscription_count() > 0,
        )
        t0 = 5 * 10**9
        for i in range(12):  # 20 Hz input, throttled to 10 Hz
            info_pub.publish(info)
            image_pub.publish(frame(t0 + i * 50_000_000))
            spin_until(executor, lambda: False, timeout_s=0.05)
        assert spin_until(executor, lambda: len(images) >= 4)
        out = images[-1]
        assert (out.width, out.height, out.encoding) == (160, 120, "bgr8")
        assert image_msg_to_array(out).shape == (120, 160, 3)
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images]
        assert all(s in {t0 + i * 50_000_000 for i in range(12)} for s in stamps)
        assert min(np.diff(stamps)) >= 100_000_000  # throttled to 10 Hz on message time
        rect_info = infos[-1]
        assert (
            rect_info.width == 160
            and not any(rect_info.d)
            and rect_info.k[0] == pytest.approx(140.0, rel=0.01)
        )
        # Corrupt frames: unknown encoding, truncated data. Counted, skipped, node alive.
        image_pub.publish(frame(t0 + 10**9, encoding="yuv422_weird"))
        spin_until(executor, lambda: False, timeout_s=0.2)
        truncated = frame(t0 + 2 * 10**9)
        truncated.data = truncated.data[:1000]
        image_pub.publish(truncated)
        assert spin_until(executor, lambda: node.diagnostics.counters.get("bad_input_image", 0) >= 2)
        n = len(images)
        image_pub.publish(frame(t0 + 3 * 10**9))
        assert spin_until(executor, lambda: len(images) > n)
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_a_topic_remapped_to_a_compressed_one_is_subscribed_as_compressed(ros_context):
    """The launch file's ``remappings:=/camera/image_raw=/front/image_raw/compressed``: the message type
    follows the remapped name (the parameter keeps the default); it used to subscribe an Image there."""
    from sensor_msgs.msg import CompressedImage, Image

    from geoloc_ros.nodes.camera_ingest import CameraIngestNode

    remap = ["--ros-args", "-r", "/camera/image_raw:=/front/image_raw/compressed"]
    node = CameraIngestNode(context=ros_context, cli_args=remap)
    try:
        types = {s.topic_name: s.msg_type for s in node.subscriptions}
        assert types["/front/image_raw/compressed"] is CompressedImage
    finally:
        node.destroy_node()
    node = CameraIngestNode(context=ros_context)
    try:
        assert {s.topic_name: s.msg_type for s in node.subscriptions}["/camera/image_raw"] is Image
    finally:
        node.destroy_node()
