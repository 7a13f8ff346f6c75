import os
import threading
import time

import numpy as np
import pytest
from pydantic import Field

from geoloc_ros.config import StrictModel
from geoloc_ros.errors import ConfigError


class Retrieval(StrictModel):
    top_k: int = Field(10, ge=1, le=100, description="candidates verified per frame")


class DemoConfig(StrictModel):
    map_bundle: str = Field("", description="path of the map bundle")
    min_inliers: int = Field(12, ge=4)
    ratio: float = Field(0.8, gt=0.0, le=1.0)
    prior_radius_m: float | None = None
    retrieval: Retrieval = Retrieval()


def test_latest_frame_worker_drops_stale_items():
    from geoloc_ros.nodes.common import LatestFrameWorker

    seen, errors = [], []
    gate = threading.Event()

    def process(item):
        gate.wait(5)
        if item == "bad":
            raise ValueError("corrupt")
        seen.append(item)

    worker = LatestFrameWorker(process, lambda item, exc: errors.append((item, str(exc))))
    worker.submit(0)
    time.sleep(0.05)  # worker picks 0 and blocks on the gate
    for i in range(1, 6):
        worker.submit(i)  # 1..4 are replaced before the worker is free: dropped
    gate.set()
    assert worker.wait_idle(5)
    time.sleep(0.05)
    worker.submit("bad")
    worker.submit(7)  # may replace "bad" or follow it; either way the worker survives
    assert worker.wait_idle(5)
    time.sleep(0.05)
    worker.stop()
    assert seen[:2] == [0, 5] and seen[-1] == 7
    assert worker.dropped >= 4


@pytest.mark.ros
def test_declare_config_from_model_and_validation():
    import rclpy
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.common import declare_config

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(
            "cfg_test",
            context=context,
            parameter_overrides=[
                Parameter("retrieval.top_k", value=5),
                Parameter("map_bundle", value="/maps/town"),
            ],
        )
        config = declare_config(node, DemoConfig)
        assert (
            config.retrieval.top_k == 5
            and config.map_bundle == "/maps/town"
            and config.prior_radius_m is None
        )
        desc = node.describe_parameter("retrieval.top_k")
        assert desc.description == "candidates verified per frame"
        assert desc.integer_range[0].from_value == 1 and desc.integer_range[0].to_value == 100
        node.destroy_node()
        bad = rclpy.create_node(
            "cfg_bad", context=context, parameter_overrides=[Parameter("ratio", value=1.5)]
        )
        with pytest.raises(ConfigError, match=r"node cfg_bad parameter: ratio: .*out of range"):
            declare_config(bad, DemoConfig)
        bad.destroy_node()
        bad = rclpy.create_node(
            "cfg_bad2", context=context, parameter_overrides=[Parameter("ratio", value=0.0)]
        )
        with pytest.raises(
            ConfigError, match=r"node cfg_bad2 parameter: ratio: Input should be greater than 0"
        ):
            declare_config(bad, DemoConfig)  # inside ROS' inclusive range, rejected by the model
        bad.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_pose_message_round_trip():
    from geoloc_ros.geo import GeoOrigin, geodetic_to_enu
    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.nodes.messages import estimate_to_navsatfix, estimate_to_pose_msg, pose_msg_to_estimate

    est = PoseEstimate.planar(
        1_700_000_000_123_456_789, 10.0, -4.0, 0.7, np.diag([0.04, 0.09, 0.001]), source="bovw"
    )
    msg = estimate_to_pose_msg(est)
    assert (
        msg.header.frame_id == "map"
        and msg.header.stamp.sec == 1_700_000_000
        and msg.header.stamp.nanosec == 123_456_789
    )
    assert (
        len(msg.pose.covariance) == 36 and msg.pose.covariance[0] == 0.04 and msg.pose.covariance[35] == 0.001
    )
    back = pose_msg_to_estimate(msg)
    assert back.stamp_ns == est.stamp_ns and np.allclose(back.pose.as_matrix(), est.pose.as_matrix())
    origin = GeoOrigin(48.0, 2.0, 50.0)
    fix = estimate_to_navsatfix(est, origin)
    enu = geodetic_to_enu(fix.latitude, fix.longitude, fix.altitude, origin)
    assert np.allclose(enu, [10.0, -4.0, 0.0], atol=1e-6)
    msg.pose.covariance[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pose_msg_to_estimate(msg)


class RequiredConfig(StrictModel):
    bag: str = Field(description="a required path")
    rate: float = 1.0


@pytest.mark.ros
def test_required_parameter_must_be_given(ros_context):
    import rclpy
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.common import declare_config

    node = rclpy.create_node("req_missing", context=ros_context)
    with pytest.raises(ConfigError, match=r"node req_missing parameter: bag: Field required"):
        declare_config(node, RequiredConfig)
    node.destroy_node()
    node = rclpy.create_node(
        "req_given", context=ros_context, parameter_overrides=[Parameter("bag", value="/b")]
    )
    assert declare_config(node, RequiredConfig).bag == "/b"
    node.destroy_node()


@pytest.mark.ros
def test_a_parameter_the_node_does_not_have_is_named_in_a_warning(ros_context, capfd):
    """ROS ignores an override no parameter matches: a typo in the parameter file
    (``retrieval.topk``) would leave the default in force unsaid. ROS' own are not warned about."""
    import rclpy
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.common import declare_config

    overrides = [
        Parameter("retrieval.topk", value=5),
        Parameter("ratio", value=0.5),
        Parameter("use_sim_time", value=True),
        Parameter("qos_overrides./geoloc/x.publisher.depth", value=3),
    ]
    node = rclpy.create_node("typo_test", context=ros_context, parameter_overrides=overrides)
    try:
        config = declare_config(node, DemoConfig)
        assert config.ratio == 0.5 and config.retrieval.top_k == 10
        warnings = [line for line in capfd.readouterr().err.splitlines() if "WARN" in line]
        assert len(warnings) == 1 and "retrieval.topk" in warnings[0], warnings
        assert "use_sim_time" not in warnings[0] and "qos_overrides" not in warnings[0]
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_guard_counts_every_exception_by_kind_and_goes_on(ros_context):
    import cv2
    import rclpy

    from geoloc_ros.camera.errors import CameraModelError
    from geoloc_ros.nodes.common import NodeDiagnostics

    node = rclpy.create_node("guard_test", context=ros_context)
    diagnostics = NodeDiagnostics(node)
    seen = []

    def callback(msg):
        if msg == "cv2":
            cv2.resize(np.zeros((0, 0), np.uint8), (0, 0))  # OpenCV error
        if msg == "geoloc":
            raise CameraModelError("bad model")
        if msg == "bug":
            raise ZeroDivisionError("oops")
        seen.append(msg)

    guarded = diagnostics.guard("image", callback)
    for msg in ("cv2", "geoloc", "bug", "bug", "ok"):
        guarded(msg)  # never raises
    counters = diagnostics.counters
    assert seen == ["ok"]
    assert counters["bad_input_image"] == 4
    assert counters["exception_error"] == 1 and counters["exception_ZeroDivisionError"] == 2
    assert "exception_CameraModelError" not in counters  # the project's own errors are bad inputs
    status = diagnostics.status()
    assert status.level == status.WARN and "4 bad inputs" in status.message
    node.destroy_node()


def test_node_entry_points_leave_discovery_to_the_environment(monkeypatch):
    """On a vehicle the nodes run on several computers: run_node must not force loopback discovery
    (tests, CI and the demo get it from geoloc_ros.nodes.isolation instead)."""
    from geoloc_ros.nodes import common

    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    seen = {}

    def fake_init(args=None):
        seen.update(os.environ)
        raise RuntimeError("stop before any ROS traffic")

    monkeypatch.setattr(common.rclpy, "init", fake_init)
    with pytest.raises(RuntimeError, match="stop before"):
        common.run_node(lambda: None)
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in seen and "ROS_LOCALHOST_ONLY" not in seen


@pytest.mark.ros
def test_dynamic_parameters_change_at_run_time_validated_the_others_stay_read_only(ros_context):
    import rclpy
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.common import declare_config, watch_dynamic_parameters

    node = rclpy.create_node("dynamic_params", context=ros_context)
    dynamic = ("min_inliers", "retrieval.top_k")
    holder = {"config": declare_config(node, DemoConfig, dynamic)}
    watch_dynamic_parameters(
        node, DemoConfig, lambda: holder["config"], lambda c: holder.__setitem__("config", c), dynamic
    )
    seen = []
    watch_dynamic_parameters(node, DemoConfig, lambda: holder["config"], seen.append, dynamic)
    try:
        changes = [Parameter("min_inliers", value=30), Parameter("retrieval.top_k", value=5)]
        result = node.set_parameters(changes)
        assert all(r.successful for r in result)
        assert holder["config"].min_inliers == 30 and holder["config"].retrieval.top_k == 5
        assert seen and seen[-1].min_inliers == 30
        # Validated through the model: below its range -> refused, nothing applied.
        (refused,) = node.set_parameters([Parameter("min_inliers", value=2)])
        assert not refused.successful and "min_inliers" in refused.reason
        assert holder["config"].min_inliers == 30
        # Not dynamic: read-only.
        (read_only,) = node.set_parameters([Parameter("ratio", value=0.5)])
        assert not read_only.successful and holder["config"].ratio == 0.8
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_the_nodes_declare_their_run_time_parameters_writable(ros_context):
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.pose_fusion import PoseFusionNode

    node = PoseFusionNode(
        context=ros_context,
        parameter_overrides=[Parameter("origin_lat", value=48.0), Parameter("origin_lon", value=2.0)],
    )
    try:
        (changed,) = node.set_parameters([Parameter("path_max_poses", value=10)])
        assert changed.successful and node.config.path_max_poses == 10
        (refused,) = node.set_parameters([Parameter("odom_topic", value="/other")])
        assert not refused.successful and node.config.odom_topic == ""
    finally:
        node.destroy_node()
