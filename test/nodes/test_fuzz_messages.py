"""Fuzzing the message boundary: malformed messages of the bad-input campaign sent to live nodes.

Every case must be counted by kind in the node's diagnostics, and the node must go on: the next
good message is processed as if nothing had happened.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.ros

GOOD = dict(width=320, height=240, fx=280.0, fy=280.0, cx=161.0, cy=119.0, distortion=(-0.2, 0.05, 0, 0, 0))


def _bad_camera_infos():
    """CameraInfos that must never become the camera model."""
    from sensor_msgs.msg import CameraInfo

    from geoloc_ros.camera import PinholeCamera

    def info(**changes):
        msg = CameraInfo(**PinholeCamera(**GOOD).camera_info_fields())
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    k = list(PinholeCamera(**GOOD).K.reshape(-1))
    return [
        info(width=100000, height=1),
        info(width=1, height=100000000),
        info(width=0, height=240),
        info(k=[math.nan, *k[1:]]),
        info(k=[0.0] * 9),
        info(k=[*k[:4], math.inf, *k[5:]]),
        info(d=[0.1, 0.2]),
        info(d=[math.nan] * 5),
        info(distortion_model="equidistant_fisheye_weird"),
    ]


def _bad_compressed_images():
    from sensor_msgs.msg import CompressedImage

    from geoloc_ros.io.images import array_to_compressed_fields

    png = bytearray(array_to_compressed_fields(np.zeros((8, 8, 3), np.uint8), "png")["data"])
    png[16:20], png[20:24] = (40000).to_bytes(4, "big"), (40000).to_bytes(4, "big")
    rng = np.random.default_rng(3)
    cases = [
        ("png", bytes(png)),  # header claims 40000x40000
        ("jpeg", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),  # random bytes
        ("jpeg", b""),  # empty
        ("tiff", b"II*\x00"),  # unsupported format
        ("png", b"\x89PNG\r\n\x1a\n"),  # truncated header
        ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(8) + b"\xff\xd9"),  # no frame
    ]
    return [CompressedImage(format=fmt, data=data) for fmt, data in cases]


def _compressed_frame(stamp_ns, shape=(240, 320)):
    from sensor_msgs.msg import CompressedImage

    from geoloc_ros.io.images import array_to_compressed_fields

    rng = np.random.default_rng(stamp_ns % 1000)
    msg = CompressedImage(**array_to_compressed_fields(rng.integers(0, 255, (*shape, 3), np.uint8), "jpeg"))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return msg


def send_each(executor, spin_until, publisher, messages, counters, key):
    """Publish ``messages`` one at a time, each counted under ``key`` before the next goes: the nodes'
    sensor-data subscriptions keep only the newest message, so a burst on a loaded machine lost some
    (the test then waited for a count that never came)."""
    start = counters.get(key, 0)
    for k, msg in enumerate(messages, start=1):
        publisher.publish(msg)
        assert spin_until(executor, lambda k=k: counters.get(key, 0) >= start + k), (key, k, counters)


def test_camera_ingest_survives_the_campaign_messages(ros_context, spin_until):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from geoloc_ros.camera import PinholeCamera
    from geoloc_ros.nodes.camera_ingest import CameraIngestNode
    from geoloc_ros.nodes.common import reliable_qos, sensor_qos

    node = CameraIngestNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("image_topic", value="/camera/image_raw/compressed"),
            Parameter("processing_width", value=160),
        ],
    )
    helper = Node("fuzz_ingest_helper", context=ros_context)
    image_pub = helper.create_publisher(CompressedImage, "/camera/image_raw/compressed", reliable_qos(50))
    info_pub = helper.create_publisher(CameraInfo, "/camera/camera_info", reliable_qos(50))
    images = []
    helper.create_subscription(Image, "/geoloc/camera/image_rect", images.append, sensor_qos(10))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    counters = node.diagnostics.counters
    try:
        assert spin_until(executor, lambda: image_pub.get_subscription_count() > 0)
        good_info = CameraInfo(**PinholeCamera(**GOOD).camera_info_fields())
        info_pub.publish(good_info)
        assert spin_until(executor, lambda: node._rectifier is not None)
        rectifier = node._rectifier
        bad_infos = _bad_camera_infos()
        send_each(executor, spin_until, info_pub, bad_infos, counters, "bad_input_camera_info")
        assert counters["bad_input_camera_info"] == len(bad_infos)
        assert node._rectifier is rectifier  # the last valid model stays in use
        bad_images = _bad_compressed_images()
        for i, msg in enumerate(bad_images):
            msg.header.stamp.sec = 10 + i
        send_each(executor, spin_until, image_pub, bad_images, counters, "bad_input_image")
        assert counters["bad_input_image"] == len(bad_images), counters
        image_pub.publish(_compressed_frame(30 * 10**9))
        assert spin_until(executor, lambda: len(images) == 1)
        assert (images[0].width, images[0].height) == (160, 120)
        # A frame whose size disagrees with CameraInfo is a bad input too, not a crash.
        image_pub.publish(_compressed_frame(31 * 10**9, shape=(100, 100)))
        assert spin_until(executor, lambda: counters.get("bad_input_image", 0) == len(bad_images) + 1)
        image_pub.publish(_compressed_frame(32 * 10**9))
        assert spin_until(executor, lambda: len(images) == 2)
        assert not any(k.startswith("exception_") for k in counters), counters
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_localizer_node_survives_the_campaign_messages(ros_context, spin_until, echo_localizer):
    """The image localizers' shared base (BoVW and PoseNet): bad CameraInfo, images, and an
    exception of any type raised while localizing one frame."""
    import cv2
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, CompressedImage

    from geoloc_ros.camera import PinholeCamera
    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.nodes.common import reliable_qos

    def localize(image, camera, stamp_ns):
        if stamp_ns == 13 * 10**9:
            cv2.remap(image, np.zeros((0, 0), np.float32), None, cv2.INTER_LINEAR)  # OpenCV error
        if stamp_ns == 14 * 10**9:
            raise MemoryError("simulated")
        return [PoseEstimate.planar(stamp_ns, 1.0, 2.0, 0.0, np.eye(3))]

    node = echo_localizer(
        "fuzz_localizer",
        "/fuzz/pose",
        localize,
        context=ros_context,
        parameter_overrides=[Parameter("io.image_topic", value="/fuzz/image/compressed")],
    )
    helper = Node("fuzz_localizer_helper", context=ros_context)
    image_pub = helper.create_publisher(CompressedImage, "/fuzz/image/compressed", reliable_qos(50))
    info_pub = helper.create_publisher(CameraInfo, "/geoloc/camera/camera_info", reliable_qos(50))
    poses = []
    helper.create_subscription(PoseWithCovarianceStamped, "/fuzz/pose", poses.append, reliable_qos(10))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    counters = node.diagnostics.counters

    def settle():
        spin_until(executor, lambda: node.worker.wait_idle(0.01), timeout_s=5)

    try:
        assert spin_until(executor, lambda: image_pub.get_subscription_count() > 0)
        camera = PinholeCamera(**GOOD).undistorted()
        info_pub.publish(CameraInfo(**camera.camera_info_fields()))
        assert spin_until(executor, lambda: node._camera is not None)
        bad_infos = _bad_camera_infos()
        send_each(executor, spin_until, info_pub, bad_infos, counters, "bad_input_camera_info")
        assert counters["bad_input_camera_info"] == len(bad_infos)
        assert node._camera == camera
        bad_images = _bad_compressed_images()
        send_each(executor, spin_until, image_pub, bad_images, counters, "bad_input_image")
        assert counters["bad_input_image"] == len(bad_images)
        # Wrong size for its CameraInfo, an OpenCV error and a MemoryError while localizing.
        for stamp_s, shape in ((12, (100, 100)), (13, (240, 320)), (14, (240, 320))):
            image_pub.publish(_compressed_frame(stamp_s * 10**9, shape))
            assert spin_until(executor, lambda n=stamp_s - 11: node.worker.processed >= n)
            settle()
        assert spin_until(executor, lambda: counters.get("bad_input_image", 0) == len(bad_images) + 3)
        assert counters["exception_error"] == 1 and counters["exception_MemoryError"] == 1
        image_pub.publish(_compressed_frame(15 * 10**9))
        assert spin_until(executor, lambda: len(poses) == 1)
        assert poses[0].header.stamp.sec == 15
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.close()
        node.destroy_node()


def test_pose_fusion_survives_the_campaign_messages_and_resumes_at_once(ros_context, spin_until):
    """Live (node clock checks on): every bad message is counted, and the next good pose is fused
    and published. Includes the campaign's GPS fix a day ahead and stale pose 1400 km away."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Imu, NavSatFix

    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.nodes.common import reliable_qos
    from geoloc_ros.nodes.messages import estimate_to_pose_msg
    from geoloc_ros.nodes.pose_fusion import PoseFusionNode

    node = PoseFusionNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("origin_lat", value=48.0),
            Parameter("origin_lon", value=2.0),
            Parameter("odom_topic", value="/odom"),
            Parameter("imu_topic", value="/imu"),
        ],
    )
    helper = Node("fuzz_fusion_helper", context=ros_context)
    pose_pub = helper.create_publisher(PoseWithCovarianceStamped, "/geoloc/bovw/pose", reliable_qos(50))
    gps_pub = helper.create_publisher(NavSatFix, "/gps/fix", reliable_qos(50))
    odom_pub = helper.create_publisher(Odometry, "/odom", reliable_qos(50))
    imu_pub = helper.create_publisher(Imu, "/imu", reliable_qos(50))
    fused = []
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(100)
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    counters = node.diagnostics.counters
    base = node.get_clock().now().nanoseconds - 5 * 10**9  # stamps in the recent past of the node clock

    def stamp_of(i):
        return base + i * 50_000_000

    def good(i):
        est = PoseEstimate.planar(stamp_of(i), 0.5 * i, 0.0, 0.0, np.diag([0.04, 0.04, 0.0004]))
        msg = estimate_to_pose_msg(est)
        msg.header.frame_id = "map"
        return msg

    def set_stamp(msg, ns):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 10**9)
        return msg

    def fix(ns, lat=48.0, lon=2.0):
        msg = NavSatFix(latitude=lat, longitude=lon, altitude=0.0)
        msg.position_covariance = [9.0, 0, 0, 0, 9.0, 0, 0, 0, 25.0]
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
        msg.status.status = 0  # STATUS_FIX
        return set_stamp(msg, ns)

    def bad_messages(i):
        """(publisher, message) pairs for the campaign's cases, stamped around pose ``i``."""
        nan_position = good(i)
        nan_position.pose.pose.position.x = math.nan
        nan_cov = good(i)
        nan_cov.pose.covariance[0] = math.nan
        zero_quaternion = good(i)
        q = zero_quaternion.pose.pose.orientation
        q.x = q.y = q.z = q.w = 0.0
        other_frame = good(i)
        other_frame.header.frame_id = "odom"
        stale_bogus = good(i)  # 10 s old, ~1400 km away
        stale_bogus.pose.pose.position.x, stale_bogus.pose.pose.position.y = 1.0e6, 1.0e6
        set_stamp(stale_bogus, stamp_of(i) - 10 * 10**9)
        odom = set_stamp(Odometry(), stamp_of(i))
        odom.twist.twist.linear.x = math.nan
        imu = set_stamp(Imu(), stamp_of(i))
        imu.angular_velocity.z = math.inf
        return [
            (pose_pub, nan_position),
            (pose_pub, nan_cov),
            (pose_pub, zero_quaternion),
            (pose_pub, other_frame),
            (pose_pub, stale_bogus),
            (gps_pub, fix(stamp_of(i) + 86_400 * 10**9)),  # a day ahead
            (gps_pub, fix(stamp_of(i), lat=math.nan)),
            (gps_pub, fix(stamp_of(i), lat=1.0e9)),
            (odom_pub, odom),
            (imu_pub, imu),
        ]

    try:
        assert spin_until(executor, lambda: pose_pub.get_subscription_count() > 0)
        assert spin_until(executor, lambda: imu_pub.get_subscription_count() > 0)
        i = 0
        for i in range(20):
            pose_pub.publish(good(i))
            executor.spin_once(timeout_sec=0.01)
        assert spin_until(executor, lambda: fused and fused[-1].header.stamp == good(19).header.stamp)
        cases = bad_messages(0)
        for case in range(len(cases)):
            i += 1
            publisher, msg = bad_messages(i)[case]
            publisher.publish(msg)
            i += 1
            pose_pub.publish(good(i))  # one good pose after each bad message is fused and published
            wanted = good(i).header.stamp
            assert spin_until(executor, lambda w=wanted: fused and fused[-1].header.stamp == w), (
                case,
                counters,
            )
            assert abs(fused[-1].pose.pose.position.x - 0.5 * i) < 1.0, case
        bad = {k: v for k, v in counters.items() if k.startswith(("bad_input_", "rejected_"))}
        assert sum(bad.values()) >= len(cases), str(counters)
        assert counters.get("resets", 0) == 0
        assert not any(k.startswith("exception_") for k in counters), counters
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()
