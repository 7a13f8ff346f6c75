"""A real rclpy publisher -> subscriber of PoseWithCovarianceStamped across two processes."""

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ros

SUBSCRIBER = r"""
import sys, time
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy

rclpy.init()
node = rclpy.create_node("geoloc_test_subscriber")
received = []
node.create_subscription(PoseWithCovarianceStamped, "/geoloc_test/pose", received.append,
                         QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
print("ready", flush=True)
deadline = time.monotonic() + 30.0
while not received and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
if received:
    m = received[0]
    print("got", m.header.frame_id, m.header.stamp.sec, m.header.stamp.nanosec, m.pose.pose.position.x,
          m.pose.covariance[0], m.pose.covariance[35], flush=True)
node.destroy_node()
rclpy.shutdown()
sys.exit(0 if received else 1)
"""


def test_pose_with_covariance_crosses_processes():
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from geoloc_ros.geometry.covariance import planar_to_pose_covariance, to_row_major

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "ready"

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("geoloc_test_publisher", context=context)
        pub = node.create_publisher(
            PoseWithCovarianceStamped,
            "/geoloc_test/pose",
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
        )
        msg = PoseWithCovarianceStamped()
        msg.header.frame_id = "map"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 123456789
        msg.pose.pose.position.x = 12.5
        msg.pose.pose.orientation.w = 1.0
        msg.pose.covariance = to_row_major(
            planar_to_pose_covariance([[0.04, 0, 0], [0, 0.09, 0], [0, 0, 0.0025]])
        )
        deadline = time.monotonic() + 30.0
        while sub.poll() is None and time.monotonic() < deadline:
            pub.publish(msg)
            time.sleep(0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    out, err = sub.communicate(timeout=10)
    assert sub.returncode == 0, f"subscriber got nothing: {err}"
    assert out.split() == ["got", "map", "1700000000", "123456789", "12.5", "0.04", "0.0025"]
