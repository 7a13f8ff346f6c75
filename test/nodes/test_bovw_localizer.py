"""bovw_localizer on real rclpy topics: tiny-drive frames in, poses, fixes and matched views out; bad
frames counted and survived; a missing map stops the node at start-up."""

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def tiny_parameters(map_dir: Path):
    from rclpy.parameter import Parameter

    return [
        Parameter("map_bundle", value=str(map_dir)),
        Parameter("verify", value="sizes"),
        # 320x240 frames: SIFT at the map's own scale.
        Parameter("localizer.features.fast", value=False),
        Parameter("localizer.rejection.min_inliers", value=15),
    ]


def test_bovw_node_localizes_frames_and_survives_bad_input(
    ros_context, spin_until, tiny_sim_dir, tiny_map_dir
):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, NavSatFix
    from visualization_msgs.msg import MarkerArray

    from geoloc_ros.camera.rectify import Rectifier
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.io.images import array_to_image_fields
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode
    from geoloc_ros.nodes.common import reliable_qos, sensor_qos

    drive = DriveBag(tiny_sim_dir / "drive")
    map_camera = MapBundle.open(tiny_map_dir, verify="none").camera
    # What camera_ingest publishes: frames rectified into the map's camera model.
    rectify = Rectifier(drive.camera, map_camera)
    frames = [(f.stamp_ns, rectify(f.image)) for f in drive.frames(max_frames=8)]

    node = BovwLocalizerNode(context=ros_context, parameter_overrides=tiny_parameters(tiny_map_dir))
    helper = Node("bovw_test_helper", context=ros_context)
    image_pub = helper.create_publisher(Image, "/geoloc/camera/image_rect", sensor_qos(1))
    info_pub = helper.create_publisher(CameraInfo, "/geoloc/camera/camera_info", sensor_qos(1))
    poses, fixes, markers = [], [], []
    helper.create_subscription(PoseWithCovarianceStamped, "/geoloc/bovw/pose", poses.append, reliable_qos(20))
    helper.create_subscription(NavSatFix, "/geoloc/bovw/fix", fixes.append, reliable_qos(20))
    helper.create_subscription(MarkerArray, "/geoloc/bovw/matched_views", markers.append, reliable_qos(20))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)

    def image_msg(stamp_ns: int, image: np.ndarray, encoding: str = "bgr8") -> Image:
        msg = Image(**array_to_image_fields(image, encoding))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        return msg

    def publish(stamp_ns: int, msg: Image) -> None:
        info = CameraInfo(**map_camera.camera_info_fields())
        info.header.stamp = msg.header.stamp
        info_pub.publish(info)
        image_pub.publish(msg)

    try:
        assert spin_until(
            executor,
            lambda: image_pub.get_subscription_count() > 0 and node.pose_pub.get_subscription_count() > 0,
        )
        for stamp, image in frames:
            # One frame at a time: the node keeps only the newest one, and this test wants them all.
            done = node.worker.processed
            publish(stamp, image_msg(stamp, image))
            spin_until(executor, lambda done=done: node.worker.processed > done, timeout_s=10)
        assert spin_until(executor, lambda: len(poses) >= 5)
        stamps = {stamp for stamp, _ in frames}
        for msg in poses:
            assert msg.header.frame_id == "map"
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec in stamps
            covariance = np.asarray(msg.pose.covariance).reshape(6, 6)
            np.testing.assert_allclose(covariance, covariance.T, atol=1e-12)
            assert np.all(np.linalg.eigvalsh(covariance) > 0)
            assert covariance[0, 0] < 1.0 and covariance[5, 5] < np.radians(5.0) ** 2
        assert spin_until(executor, lambda: len(fixes) >= 1 and len(markers) >= 1)
        assert fixes[-1].header.stamp.sec * 10**9 + fixes[-1].header.stamp.nanosec in stamps
        shown = [m for m in markers[-1].markers if m.ns == "matched_views"]
        assert shown and all(m.header.frame_id == "map" for m in shown)

        # A black frame, one whose size disagrees with camera_info, one in an unsupported encoding.
        last = frames[-1][0]
        publish(last + 10**9, image_msg(last + 10**9, np.zeros_like(frames[0][1])))
        spin_until(executor, lambda: False, timeout_s=0.5)
        publish(last + 2 * 10**9, image_msg(last + 2 * 10**9, frames[0][1][:100, :100].copy()))
        spin_until(executor, lambda: False, timeout_s=0.5)
        bad = Image(**array_to_image_fields(frames[0][1], "bgr8"))
        bad.encoding = "32FC1"
        publish(last + 3 * 10**9, bad)
        assert spin_until(executor, lambda: node.diagnostics.counters.get("bad_input_image", 0) >= 3)
        # Still alive: the next good frame gives a pose.
        count = len(poses)
        stamp, image = frames[-1]
        publish(last + 4 * 10**9, image_msg(last + 4 * 10**9, image))
        assert spin_until(executor, lambda: len(poses) > count)
        assert node.diagnostics.gauges.get("inliers", 0) >= 15

        # /initialpose moves the search: 500 m away, only views near it are searched -> no pose.
        from std_srvs.srv import Trigger

        init_pub = helper.create_publisher(PoseWithCovarianceStamped, "/initialpose", reliable_qos(1))
        here = poses[-1].pose.pose.position

        def initialpose(x, y):
            msg = PoseWithCovarianceStamped()
            msg.header.frame_id = "map"
            msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
            msg.pose.pose.orientation.w = 1.0
            msg.pose.covariance[0] = msg.pose.covariance[7] = 4.0
            msg.pose.covariance[35] = 0.1
            return msg

        def localizes(stamp_ns):
            count, done = len(poses), node.worker.processed
            publish(stamp_ns, image_msg(stamp_ns, image))
            assert spin_until(executor, lambda: node.worker.processed > done, timeout_s=20)
            spin_until(executor, lambda: len(poses) > count, timeout_s=1.0)
            return len(poses) > count

        assert spin_until(executor, lambda: init_pub.get_subscription_count() > 0)
        init_pub.publish(initialpose(here.x + 500.0, here.y + 500.0))
        assert spin_until(executor, lambda: node.diagnostics.counters.get("initialposes", 0) >= 1)
        assert not localizes(last + 5 * 10**9)
        # ... at the vehicle's position: localized there.
        init_pub.publish(initialpose(here.x + 3.0, here.y - 2.0))
        assert spin_until(executor, lambda: node.diagnostics.counters.get("initialposes", 0) >= 2)
        assert localizes(last + 6 * 10**9)
        found = poses[-1].pose.pose.position
        assert np.hypot(found.x - here.x, found.y - here.y) < 1.0
        # ~/reset (std_srvs/Trigger) after a far-away initial pose: the whole map is searched again.
        init_pub.publish(initialpose(here.x + 500.0, here.y + 500.0))
        assert spin_until(executor, lambda: node.diagnostics.counters.get("initialposes", 0) >= 3)
        client = helper.create_client(Trigger, "/bovw_localizer/reset")
        assert spin_until(executor, client.service_is_ready)
        future = client.call_async(Trigger.Request())
        assert spin_until(executor, future.done)
        assert future.result().success
        assert localizes(last + 7 * 10**9)
        # A GPS fix the prior cannot use is counted by why (it was dropped without a trace).
        from sensor_msgs.msg import NavSatFix

        fix = NavSatFix(latitude=node.origin.lat_deg, longitude=node.origin.lon_deg)
        fix.status.status = -1  # STATUS_NO_FIX
        node._on_gps(fix)
        fix.status.status = 0
        fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
        node._on_gps(fix)
        counters = node.diagnostics.counters
        assert counters["gps_no_fix"] == 1 and counters["gps_unknown_covariance"] == 1
        assert node._gps_prior is None
    finally:
        executor.shutdown()
        node.close()
        helper.destroy_node()
        node.destroy_node()


def test_bovw_node_refuses_to_start_without_a_valid_map(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    from geoloc_ros.errors import GeolocError
    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode

    with pytest.raises(GeolocError):
        BovwLocalizerNode(
            context=ros_context,
            parameter_overrides=[Parameter("map_bundle", value=str(tmp_path / "missing"))],
        )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GeolocError):
        BovwLocalizerNode(
            context=ros_context, parameter_overrides=[Parameter("map_bundle", value=str(corrupt))]
        )
