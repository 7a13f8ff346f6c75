"""The pose_fusion node on real rclpy topics: fuses poses, survives bad input, resets on time jumps."""

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def stamp_ns(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def make_pose(stamp_ns, x, y, yaw, var=0.04, frame="map"):
    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.nodes.messages import estimate_to_pose_msg

    est = PoseEstimate.planar(stamp_ns, x, y, yaw, np.diag([var, var, 0.0004]))
    msg = estimate_to_pose_msg(est)
    msg.header.frame_id = frame
    return msg


def test_fusion_node_tracks_resets_and_survives_bad_input(ros_context, spin_until):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Path
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.common import reliable_qos
    from geoloc_ros.nodes.pose_fusion import PoseFusionNode

    node = PoseFusionNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("origin_lat", value=48.0),
            Parameter("origin_lon", value=2.0),
            Parameter("gps_topic", value=""),
            Parameter("clock_checks", value=False),  # synthetic stamps, far from the wall clock
        ],
    )
    helper = node.__class__.__mro__[1]("fusion_test_helper", context=ros_context)
    pub = helper.create_publisher(PoseWithCovarianceStamped, "/geoloc/bovw/pose", reliable_qos(20))
    fused, paths = [], []
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(50)
    )
    helper.create_subscription(Path, "/geoloc/fused/path", paths.append, reliable_qos(5))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    try:
        assert spin_until(
            executor, lambda: pub.get_subscription_count() > 0 and node.pose_pub.get_subscription_count() > 0
        )
        t0 = 1_000_000_000_000
        # A car driving east at 10 m/s, one BoVW pose every 50 ms.
        for i in range(60):
            pub.publish(make_pose(t0 + i * 50_000_000, 0.5 * i, 0.0, 0.0))
            executor.spin_once(timeout_sec=0.01)
        final_ns = t0 + 59 * 50_000_000
        # Discovery may swallow the first few messages; the stream must still converge on the last one.
        assert spin_until(executor, lambda: len(fused) >= 40 and stamp_ns(fused[-1]) == final_ns), len(fused)
        last = fused[-1]
        assert last.header.frame_id == "map"
        assert abs(last.pose.pose.position.x - 29.5) < 0.3 and abs(last.pose.pose.position.y) < 0.3
        assert 0 < last.pose.covariance[0] < 1.0 and len(last.pose.covariance) == 36
        # Bad input: NaN covariance, a pose in another frame. Both are skipped and counted.
        bad = make_pose(t0 + 60 * 50_000_000, 30.0, 0.0, 0.0)
        bad.pose.covariance[0] = float("nan")
        pub.publish(bad)
        pub.publish(make_pose(t0 + 61 * 50_000_000, 30.5, 0.0, 0.0, frame="odom"))
        assert spin_until(
            executor,
            lambda: (
                node.diagnostics.counters.get("bad_input_bovw", 0) >= 1
                and any(k.startswith("rejected_bovw_") for k in node.diagnostics.counters)
            ),
        )
        # A bag loop: time jumps back 3 s -> the filter resets, the path restarts.
        n_before = len(fused)
        for i in range(10):
            pub.publish(make_pose(t0 + i * 50_000_000, 0.5 * i, 0.0, 0.0))
            executor.spin_once(timeout_sec=0.01)
        assert spin_until(executor, lambda: len(fused) >= n_before + 5)
        assert node.diagnostics.counters.get("resets", 0) >= 1
        assert spin_until(executor, lambda: paths and len(paths[-1].poses) <= 10)
        assert stamp_ns(fused[-1]) < t0 + 10 * 50_000_000
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()
