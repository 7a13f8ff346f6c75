"""`geoloc stack --bag` as a user runs it: its own process, replaying the tiny drive into every node;
a listener in this process receives the fused poses across processes."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from geoloc_ros.io.estimates import group_by_source, read_estimates
from geoloc_ros.io.tum import read_tum

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_stack_cli_replays_a_bag_and_publishes_fused_poses(
    ros_context, tiny_sim_dir, tiny_map_dir, tiny_posenet_model, tmp_path
):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.common import reliable_qos

    drive = tiny_sim_dir / "drive"
    listener = Node("stack_cli_test_listener", context=ros_context)
    fused: list = []
    listener.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(200)
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    command = [
        sys.executable,
        "-m",
        "geoloc_ros.cli.main",
        "stack",
        "--map",
        str(tiny_map_dir),
        "--posenet",
        str(tiny_posenet_model),
        "--bag",  # the mounting is found beside bag/, as geoloc localize finds it
        str(drive / "bag"),
        "--rate",
        "2",
        "--record",
        str(tmp_path / "record"),
        "--json",
    ]
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 180
            while process.poll() is None and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            executor.shutdown()
            listener.destroy_node()
    output = stdout_path.read_text()
    assert process.returncode == 0, stderr_path.read_text()[-3000:]
    camera = MapBundle.open(tiny_map_dir, verify="none").camera
    # The frames are processed in the map's camera model, not the parameter file's 640 px default.
    assert f"processing camera from the map: {camera.width}x{camera.height}" in output
    assert f"processing camera {camera.width}x{camera.height}" in stderr_path.read_text()
    assert "running camera_ingest, bovw_localizer, posenet_localizer, pose_fusion, geoloc_replay" in output
    # The stack ends with the bag; its fused poses crossed processes in the map frame.
    assert len(fused) >= 20, f"only {len(fused)} fused poses reached the listener"
    assert all(m.header.frame_id == "map" for m in fused)
    assert f"camera mounting from the drive: {drive / 'camera_mounting.yaml'}" in output
    # On exit: the summary of what was published, and the same files as geoloc localize writes.
    summary = json.loads(output[output.index("\n{") + 1 :])
    counts = {source: s["estimates"] for source, s in summary["sources"].items()}
    assert set(counts) == {"bovw", "posenet", "posenet_temporal", "fused"}
    assert counts["fused"] >= len(fused) - 2 and summary["replayed_messages"] > 0
    recorded = group_by_source(read_estimates(tmp_path / "record" / "estimates.jsonl"))
    assert {source: len(e) for source, e in recorded.items() if e} == {s: n for s, n in counts.items() if n}
    trajectory = read_tum(tmp_path / "record" / "trajectory_fused.tum")
    assert len(trajectory) == counts["fused"] and np.all(trajectory.positions[:, 2] == 0.0)
    assert json.loads((tmp_path / "record" / "summary.json").read_text())["sources"] == summary["sources"]


def test_stack_cli_refuses_a_directory_that_is_no_map_bundle(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "geoloc_ros.cli.main", "stack", "--map", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert str(tmp_path) in result.stderr
