"""The whole stack as real rclpy nodes on the tiny drive replayed with /clock: camera ingestion, BoVW and
PoseNet localizers and fusion; the fused pose topic is checked against the RTK ground truth."""

import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_stack_on_replayed_tiny_drive(ros_context, tiny_sim_dir, tiny_map_dir, tiny_stack, replay_node):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.node import Node

    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.localize.localizer import Localizer
    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode
    from geoloc_ros.nodes.common import reliable_qos
    from geoloc_ros.nodes.stack import destroy_nodes, stack_executor

    drive = tiny_sim_dir / "drive"
    drive_bag = DriveBag(drive)
    nodes = tiny_stack
    listener = Node("stack_test_listener", context=ros_context)
    fused, bovw = [], []
    listener.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(100)
    )
    listener.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/bovw/pose", bovw.append, reliable_qos(100)
    )
    replay = replay_node(drive / "bag", rate=1.0, start_delay_s=2.0, map_bundle=str(tiny_map_dir))
    executor = stack_executor([*nodes, listener, replay], context=ros_context)
    localizer = next(n for n in nodes if isinstance(n, BovwLocalizerNode))
    # Every frame the localizer processed (it takes the newest one whenever it is free: under load it
    # skips more frames, by design), as its core localizer got it, and what it made of it.
    processed: list[tuple[int, np.ndarray, object, object, bool]] = []
    core_localize = localizer.localizer.localize

    def recording_localize(image, stamp_ns, gps_prior=None):
        result = core_localize(image, stamp_ns, gps_prior)
        processed.append((stamp_ns, image.copy(), localizer._input_camera, gps_prior, result.localized))
        return result

    localizer.localizer.localize = recording_localize
    worker, counters = localizer.worker, localizer.diagnostics.counters

    def finished() -> bool:
        """Every frame the localizer received is processed or dropped, and the listener has every pose
        it published (waiting for the work, not for a fixed time)."""
        done = worker.processed + worker.dropped == counters.get("frames_received", 0)
        return done and len(bovw) == counters.get("poses_published", 0)

    try:
        deadline = time.monotonic() + 180
        while not replay.done.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert replay.done.is_set()
        deadline = time.monotonic() + 60
        while not finished() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        for _ in range(10):  # the fused poses of the last BoVW poses
            executor.spin_once(timeout_sec=0.1)
        assert finished()
        # Nodes ran on the bag's clock.
        sim_now = nodes[0].get_clock().now().nanoseconds
        gt = np.load(drive / "groundtruth.npz")
        assert gt["stamp_ns"][0] - 10**9 <= sim_now <= gt["stamp_ns"][-1] + 10**9
        # Counted against the frames the localizer processed, not the bag's 73 (how many it skips
        # depends on the machine's load): the node localizes each of them as the core localizer does
        # offline on the same images in the same order, and the poses are right. A starved executor
        # (a GIL-polling MultiThreadedExecutor) left 4-16 poses, seconds late, and a fused error of
        # metres (below).
        assert len(processed) >= 10, f"the BoVW localizer processed only {len(processed)} frames"
        assert len(bovw) == sum(localized for *_, localized in processed)
        offline = Localizer(localizer.bundle, localizer.localizer.config, drive_bag.mounting)
        differ = []
        for stamp, image, camera, prior, localized in processed:
            if camera is not None:
                offline.set_input_camera(camera)
            if offline.localize(image, stamp, prior).localized != localized:
                differ.append(stamp)
        assert not differ, f"{len(differ)} of {len(processed)} frames localized otherwise than offline"
        assert len(bovw) >= 10, f"{len(bovw)} poses from {len(processed)} processed frames"

        def median_error(messages: list) -> float:
            stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in messages])
            xy = np.array([[m.pose.pose.position.x, m.pose.pose.position.y] for m in messages])
            truth = np.column_stack(
                [np.interp(stamps, gt["stamp_ns"], gt["position_enu"][:, k]) for k in (0, 1)]
            )
            return float(np.median(np.linalg.norm(xy - truth, axis=1)))

        assert median_error(bovw) < 0.3, f"BoVW median error {median_error(bovw):.2f} m"
        assert len(fused) >= 0.5 * len(bovw), "the fusion published too few poses"
        assert all(m.header.frame_id == "map" for m in fused)
        assert median_error(fused) < 1.0, f"fused median error {median_error(fused):.2f} m"
    finally:
        executor.shutdown()
        destroy_nodes([replay, *nodes, listener])


def test_the_shipped_parameter_file_names_only_parameters_its_nodes_declare(repo_root, node_parameters):
    """A name no node declares is ignored by ROS; ``/**`` entries reach every node."""
    from geoloc_ros.nodes.stack import load_parameter_file

    parameters = load_parameter_file(repo_root / "config" / "geoloc.yaml")
    for node, values in parameters.items():
        targets = node_parameters if node == "/**" else {node: node_parameters[node]}
        for target, declared in targets.items():
            assert set(values) <= declared, (
                f"config/geoloc.yaml: {node}: {set(values) - declared} on {target}"
            )


def test_parameter_file_wildcard_entries_reach_every_node(tmp_path):
    from geoloc_ros.nodes.stack import load_parameter_file

    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    io.base_frame: chassis\n"
        "bovw_localizer:\n  ros__parameters:\n    io:\n      base_frame: base_link\n    verify: sizes\n"
        "pose_fusion:\n  ros__parameters:\n    gps_topic: ''\n"
    )
    assert load_parameter_file(path) == {
        "bovw_localizer": {"io.base_frame": "base_link", "verify": "sizes"},
        "pose_fusion": {"io.base_frame": "chassis", "gps_topic": ""},
        "/**": {"io.base_frame": "chassis"},
    }
