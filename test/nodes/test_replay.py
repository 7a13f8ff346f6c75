"""geoloc replay publishes a bag's messages, /clock and the ground-truth path on real rclpy topics."""

import pytest

pytestmark = pytest.mark.ros


def test_replay_publishes_bag_clock_and_groundtruth(ros_context, spin_until, tiny_sim_dir, replay_node):
    from nav_msgs.msg import Path
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, NavSatFix

    from geoloc_ros.io.bag import bag_info
    from geoloc_ros.nodes.common import reliable_qos

    bag = tiny_sim_dir / "drive" / "bag"
    info = bag_info(bag)
    helper = Node("replay_test_helper", context=ros_context)
    images, clocks, fixes, paths = [], [], [], []
    helper.create_subscription(Image, "/camera/image_raw", images.append, reliable_qos(100))
    helper.create_subscription(Clock, "/clock", clocks.append, reliable_qos(100))
    helper.create_subscription(NavSatFix, "/rtk/fix", fixes.append, reliable_qos(100))
    helper.create_subscription(Path, "/geoloc/groundtruth/path", paths.append, reliable_qos(5))
    node = replay_node(
        bag,
        rate=5.0,
        start_delay_s=1.0,
        topics=["/camera/image_raw", "/rtk/fix"],
        map_bundle="",
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    try:
        assert spin_until(executor, node.done.is_set, timeout_s=60)
        spin_until(executor, lambda: len(fixes) >= info.counts["/rtk/fix"], timeout_s=10)
        assert node.published == info.counts["/camera/image_raw"] + info.counts["/rtk/fix"]
        assert len(fixes) == info.counts["/rtk/fix"]
        assert len(images) >= 0.8 * info.counts["/camera/image_raw"]
        stamps = [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks]
        assert stamps == sorted(stamps) and info.start_ns <= stamps[0] and stamps[-1] <= info.end_ns
        assert not paths  # no map bundle: no ground-truth path
    finally:
        executor.shutdown()
        node.close()
        helper.destroy_node()
        node.destroy_node()


def test_unknown_topic_is_refused(tiny_sim_dir, replay_node):

    from geoloc_ros.io.errors import BagError

    with pytest.raises(BagError, match="/nope"):
        replay_node(tiny_sim_dir / "drive" / "bag", topics=["/nope"])


def test_groundtruth_path_is_in_map_and_bounded(
    ros_context, spin_until, tiny_sim_dir, tiny_map_dir, replay_node
):
    import numpy as np
    from nav_msgs.msg import Path
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from geoloc_ros.nodes.common import reliable_qos

    drive = tiny_sim_dir / "drive"
    helper = Node("replay_path_test_helper", context=ros_context)
    paths: list = []
    helper.create_subscription(Path, "/geoloc/groundtruth/path", paths.append, reliable_qos(200))
    node = replay_node(
        drive / "bag",
        rate=10.0,
        start_delay_s=1.0,
        topics=["/rtk/fix"],
        map_bundle=str(tiny_map_dir),
        path_max_poses=10,
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    try:
        assert spin_until(executor, node.done.is_set, timeout_s=60)
        spin_until(executor, lambda: len(paths) >= node.published, timeout_s=10)
        assert paths, "no ground-truth path was published"
        last = paths[-1]
        assert last.header.frame_id == "map"
        assert max(len(p.poses) for p in paths) == 10
        gt = np.load(drive / "groundtruth.npz")
        # The ground truth is sampled at the camera frames: compare the fixes at those stamps.
        frame_stamps = set(gt["stamp_ns"].tolist())
        compared = 0
        for pose in last.poses:
            stamp = pose.header.stamp.sec * 10**9 + pose.header.stamp.nanosec
            if stamp in frame_stamps:
                truth = gt["position_enu"][gt["stamp_ns"] == stamp][0]
                # RTK noise is ~2 cm: the path is the fixes converted into the map's ENU frame.
                assert np.hypot(pose.pose.position.x - truth[0], pose.pose.position.y - truth[1]) < 0.1
                compared += 1
        assert compared >= 3
    finally:
        executor.shutdown()
        node.close()
        helper.destroy_node()
        node.destroy_node()


def test_a_bad_ground_truth_fix_is_skipped_and_the_replay_goes_on(
    ros_context, spin_until, tiny_map_dir, tmp_path, replay_node
):
    """A GNSS receiver may log a fix with NaN coordinates and status FIX: the ground-truth path skips
    it; the replay (the whole `geoloc stack --bag` run) used to end there. The path's frame is the
    configured map frame."""
    import math

    from rclpy.executors import SingleThreadedExecutor

    from geoloc_ros.io.bag import BagWriter, navsatfix_message
    from geoloc_ros.mapping.map import MapBundle

    origin = MapBundle.open(tiny_map_dir, verify="none").origin
    bag_dir = tmp_path / "bag"
    t0 = 1_716_312_600_000_000_000
    with BagWriter(bag_dir) as bag:
        bag.add_topic("/rtk/fix", "sensor_msgs/msg/NavSatFix")
        for k in range(5):
            lat = math.nan if k == 2 else origin.lat_deg + k * 1e-6
            fix = navsatfix_message(bag.typestore, t0 + k * 10**8, "rtk_antenna", lat, origin.lon_deg, 0.0)
            bag.write("/rtk/fix", t0 + k * 10**8, fix)
    node = replay_node(
        bag_dir,
        rate=0.0,
        start_delay_s=0.0,
        map_bundle=str(tiny_map_dir),
        map_frame="world",
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        assert spin_until(executor, node.done.is_set, timeout_s=30)
        assert node.published == 5
        assert len(node._gt_path.poses) == 4 and node._gt_path.header.frame_id == "world"
        assert {p.header.frame_id for p in node._gt_path.poses} == {"world"}
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
