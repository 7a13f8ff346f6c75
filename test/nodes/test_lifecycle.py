"""Lifecycle variants: configure sets the node up, activate starts processing, deactivate stops it."""

import pytest

pytestmark = pytest.mark.ros


def test_fusion_lifecycle_configure_activate_deactivate(ros_context, spin_until):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.nodes.common import reliable_qos
    from geoloc_ros.nodes.lifecycle import lifecycle_variant
    from geoloc_ros.nodes.messages import estimate_to_pose_msg
    from geoloc_ros.nodes.pose_fusion import PoseFusionNode

    managed_class = lifecycle_variant(PoseFusionNode, "pose_fusion")
    params = [
        Parameter("origin_lat", value=48.0),
        Parameter("origin_lon", value=2.0),
        Parameter("clock_checks", value=False),  # synthetic stamps, far from the wall clock
    ]
    node = managed_class(context=ros_context, parameter_overrides=params)
    assert not node.has_parameter("pose_inputs")  # unconfigured: nothing declared or loaded yet
    helper = Node("lifecycle_helper", context=ros_context)
    pub = helper.create_publisher(PoseWithCovarianceStamped, "/geoloc/bovw/pose", reliable_qos(20))
    fused = []
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(50)
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)

    def send(i):
        est = PoseEstimate.planar(
            10**9 + i * 10**8, 0.5 * i, 0.0, 0.0, [[0.04, 0, 0], [0, 0.04, 0], [0, 0, 4e-4]]
        )
        msg = estimate_to_pose_msg(est)
        msg.header.frame_id = "map"
        pub.publish(msg)
        spin_until(executor, lambda: False, timeout_s=0.05)

    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.config.pose_inputs and node.filter is not None
        assert spin_until(executor, lambda: pub.get_subscription_count() > 0)
        for i in range(3):  # configured but inactive: nothing is processed
            send(i)
        assert not fused and node.diagnostics.counters.get("received_bovw", 0) == 0
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        for i in range(3, 8):
            send(i)
        assert spin_until(executor, lambda: len(fused) >= 3)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        received = node.diagnostics.counters["received_bovw"]
        for i in range(8, 11):
            send(i)
        assert node.diagnostics.counters["received_bovw"] == received
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_configure_fails_with_the_start_up_error_instead_of_ending_the_process(ros_context, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode
    from geoloc_ros.nodes.lifecycle import lifecycle_variant

    managed_class = lifecycle_variant(BovwLocalizerNode, "bovw_localizer")
    node = managed_class(
        context=ros_context, parameter_overrides=[Parameter("map_bundle", value=str(tmp_path / "missing"))]
    )
    try:
        before = {kind: len(list(getattr(node, kind))) for kind in ("publishers", "timers", "services")}
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        # The failed set-up had created its pose publishers and diagnostics timer: all undone.
        assert {kind: len(list(getattr(node, kind))) for kind in before} == before
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE  # the same error again
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()


def test_configure_can_be_retried_after_a_start_up_error(ros_context, tmp_path):
    """A lifecycle manager retries configure once the missing file is there (a disk mounted late): the
    retry reports the real state, not 'parameter already declared', and leaves no duplicate topics."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.lifecycle import lifecycle_variant
    from geoloc_ros.nodes.pose_fusion import PoseFusionNode

    fusion_yaml = tmp_path / "fusion.yaml"
    params = [
        Parameter("origin_lat", value=48.0),
        Parameter("origin_lon", value=2.0),
        Parameter("fusion_config", value=str(fusion_yaml)),
    ]
    node = lifecycle_variant(PoseFusionNode, "pose_fusion")(context=ros_context, parameter_overrides=params)
    try:
        publishers = len(list(node.publishers))
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert len(list(node.publishers)) == publishers  # what the failed configure created is gone
        fusion_yaml.write_text("history_s: 1.5\n")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.filter.config.history_s == 1.5
        topics = [p.topic_name for p in node.publishers]
        assert len(topics) == len(set(topics)), topics
        for _ in range(2):  # activate / deactivate / cleanup / configure, twice
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert len(list(node.publishers)) == publishers and len(list(node.timers)) == 0
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        topics = [p.topic_name for p in node.publishers]
        assert len(topics) == len(set(topics)), topics
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()


def test_an_unconfigured_localizer_shuts_down_cleanly(ros_context, tmp_path):
    """Shutdown (and the entry point's close) before configure: nothing was started, nothing fails."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode
    from geoloc_ros.nodes.lifecycle import lifecycle_variant

    node = lifecycle_variant(BovwLocalizerNode, "bovw_localizer")(
        context=ros_context, parameter_overrides=[Parameter("map_bundle", value=str(tmp_path / "missing"))]
    )
    try:
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        node.close()
    finally:
        node.destroy_node()
