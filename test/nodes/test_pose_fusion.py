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


def fusion_node_and_helper(ros_context, helper_name, **parameters):
    """A pose_fusion node at a fixed origin without GPS (plus ``parameters``), a helper node, and an
    executor spinning both."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.pose_fusion import PoseFusionNode

    # Synthetic stamps, far from the wall clock: the live clock checks are off.
    values = {"origin_lat": 48.0, "origin_lon": 2.0, "gps_topic": "", "clock_checks": False, **parameters}
    overrides = [Parameter(name, value=value) for name, value in values.items()]
    node = PoseFusionNode(context=ros_context, parameter_overrides=overrides)
    helper = Node(helper_name, context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    return node, helper, executor


def test_fusion_node_tracks_resets_and_survives_bad_input(ros_context, spin_until):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Path

    from geoloc_ros.nodes.common import reliable_qos

    node, helper, executor = fusion_node_and_helper(ros_context, "fusion_test_helper")
    pub = helper.create_publisher(PoseWithCovarianceStamped, "/geoloc/bovw/pose", reliable_qos(20))
    fused, paths = [], []
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(50)
    )
    helper.create_subscription(Path, "/geoloc/fused/path", paths.append, reliable_qos(5))
    try:
        assert spin_until(
            executor, lambda: pub.get_subscription_count() > 0 and node.pose_pub.get_subscription_count() > 0
        )
        t0 = 1_000_000_000_000
        # A car driving east at 10 m/s, one BoVW pose every 50 ms (each taken in before the next is sent,
        # so a loaded machine does not overflow the subscription's queue).
        for i in range(60):
            received = node.diagnostics.counters.get("received_bovw", 0)
            pub.publish(make_pose(t0 + i * 50_000_000, 0.5 * i, 0.0, 0.0))
            spin_until(
                executor,
                lambda received=received: node.diagnostics.counters.get("received_bovw", 0) > received,
                timeout_s=2.0,
            )
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

        # /initialpose: the filter restarts at the operator's pose (stamp 0: the newest stamp is used).
        from std_srvs.srv import Trigger

        init_pub = helper.create_publisher(PoseWithCovarianceStamped, "/initialpose", reliable_qos(1))
        assert spin_until(executor, lambda: init_pub.get_subscription_count() > 0)
        operator = make_pose(0, 120.0, -40.0, 1.0, var=0.25)
        init_pub.publish(operator)
        assert spin_until(executor, lambda: abs(fused[-1].pose.pose.position.x - 120.0) < 0.1)
        assert abs(fused[-1].pose.pose.position.y + 40.0) < 0.1
        resets = node.diagnostics.counters["resets"]
        # ~/reset (std_srvs/Trigger): forgets the state; the next localizer pose re-initializes.
        client = helper.create_client(Trigger, "/pose_fusion/reset")
        assert spin_until(executor, client.service_is_ready)
        future = client.call_async(Trigger.Request())
        assert spin_until(executor, future.done) and future.result().success
        assert node.diagnostics.counters["resets"] == resets + 1 and not node.filter.initialized
        pub.publish(make_pose(t0 + 20 * 50_000_000, 10.0, 0.0, 0.0))
        assert spin_until(executor, lambda: abs(fused[-1].pose.pose.position.x - 10.0) < 0.3)
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_pose_inputs_are_checked_against_the_fusion_sources():
    from geoloc_ros.errors import ConfigError
    from geoloc_ros.nodes.pose_fusion import parse_pose_inputs

    known = ["bovw", "posenet", "posenet_temporal"]
    assert parse_pose_inputs(["bovw=/a", " posenet_temporal = /b "], known) == {
        "bovw": "/a",
        "posenet_temporal": "/b",
    }
    with pytest.raises(ConfigError, match=r"source 'lidar' is not a pose source.*pose_sources"):
        parse_pose_inputs(["lidar=/scan_pose"], known)
    with pytest.raises(ConfigError, match="'bovw' is not SOURCE=TOPIC"):
        parse_pose_inputs(["bovw"], known)
    with pytest.raises(ConfigError, match="'bovw' given twice"):
        parse_pose_inputs(["bovw=/a", "bovw=/b"], known)


def test_map_to_odom_uses_the_odometry_at_the_estimate_stamp(ros_context, spin_until, tmp_path):
    """A car turning at 10 m/s; each BoVW pose arrives 100 ms after its image, when the odometry has moved
    on. map->odom pairs the pose with the odometry at the image's stamp: the vehicle's pose through
    map->odom->base_link stays within 5 cm (with the newest odometry it was off by ~1 m). A custom pose
    input name (pose_inputs) and the fused Odometry output are exercised on the way."""
    from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
    from nav_msgs.msg import Odometry

    from geoloc_ros.geometry.pose import Pose3D
    from geoloc_ros.nodes.common import reliable_qos, sensor_qos
    from geoloc_ros.nodes.messages import ns_to_stamp

    speed, yaw_rate, latency_ns, odom_period_ns = 10.0, 0.5, 100_000_000, 20_000_000
    t_map_odom_true = Pose3D.from_xyz_ypr([35.0, -12.0, 0.0], 0.3)

    def t_odom_base(t_ns):
        yaw = yaw_rate * t_ns * 1e-9
        r = speed / yaw_rate
        return Pose3D.from_xyz_ypr([r * np.sin(yaw), r * (1 - np.cos(yaw)), 0.0], yaw)

    # Odometry feeds map->odom only (the filter runs on the poses), so estimates carry the poses' stamps.
    fusion_yaml = tmp_path / "fusion.yaml"
    fusion_yaml.write_text("motion_sources:\n  odometry: {enabled: false}\n  imu: {enabled: false}\n")
    node, helper, executor = fusion_node_and_helper(
        ros_context,
        "fusion_odom_helper",
        odom_topic="/test/odom",
        fusion_config=str(fusion_yaml),
        pose_inputs=["bovw=/test/vision_pose"],
    )
    pose_pub = helper.create_publisher(PoseWithCovarianceStamped, "/test/vision_pose", reliable_qos(20))
    odom_pub = helper.create_publisher(Odometry, "/test/odom", sensor_qos(20))
    transforms, odometry = [], []
    helper.create_subscription(
        TransformStamped, "/geoloc/fused/map_to_odom", transforms.append, reliable_qos(50)
    )
    helper.create_subscription(Odometry, "/geoloc/fused/odometry", odometry.append, reliable_qos(50))

    def odom_msg(t_ns):
        pose = t_odom_base(t_ns)
        msg = Odometry()
        msg.header.stamp, msg.header.frame_id, msg.child_frame_id = ns_to_stamp(t_ns), "odom", "base_link"
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        p.x, p.y, p.z = (float(v) for v in pose.translation)
        q.x, q.y, q.z, q.w = (float(v) for v in pose.quaternion)
        msg.twist.twist.linear.x, msg.twist.twist.angular.z = speed, yaw_rate
        return msg

    try:
        assert spin_until(
            executor,
            lambda: pose_pub.get_subscription_count() > 0 and odom_pub.get_subscription_count() > 0,
        )
        t0 = 2_000_000_000
        next_odom = t0 - 500_000_000
        images = [t0 + k * 100_000_000 for k in range(12)]
        for image_ns in images:
            while next_odom <= image_ns + latency_ns:  # the odometry runs 100 ms ahead of the image
                odom_pub.publish(odom_msg(next_odom))
                next_odom += odom_period_ns
                executor.spin_once(timeout_sec=0.005)
            truth = t_map_odom_true.compose(t_odom_base(image_ns))
            pose_pub.publish(make_pose(image_ns, *truth.translation[:2], truth.yaw, var=1e-6))
            executor.spin_once(timeout_sec=0.01)
        assert spin_until(executor, lambda: transforms and stamp_ns(transforms[-1]) == images[-1]), (
            node.diagnostics.counters,
            [stamp_ns(t) for t in transforms],
        )
        tf = transforms[-1]
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "odom")
        t, r = tf.transform.translation, tf.transform.rotation
        t_map_odom = Pose3D.from_xyz_quaternion([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])
        now_ns = images[-1] + latency_ns
        truth_now = t_map_odom_true.compose(t_odom_base(now_ns))
        error = np.linalg.norm(t_map_odom.compose(t_odom_base(now_ns)).translation - truth_now.translation)
        assert error <= 0.05, error
        # The newest odometry paired with the same pose: what the node did before (~ speed x latency).
        fused_pose = t_map_odom.compose(t_odom_base(images[-1]))
        latest_pairing = fused_pose.compose(t_odom_base(now_ns).inverse())
        believed = latest_pairing.compose(t_odom_base(now_ns))
        before = np.linalg.norm(believed.translation - truth_now.translation)
        assert before > 0.8 * speed * latency_ns * 1e-9
        # The fused Odometry: map -> base_link, the pose fused at the image's stamp.
        assert spin_until(executor, lambda: odometry and stamp_ns(odometry[-1]) == images[-1])
        assert (odometry[-1].header.frame_id, odometry[-1].child_frame_id) == ("map", "base_link")
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_a_new_pose_source_is_configuration_only(ros_context, spin_until, tmp_path):
    """robot_localization's pose0..N: a pose source the project does not know (here a lidar
    localizer) is one entry under ``pose_sources`` in the fusion YAML plus one ``pose_inputs`` item;
    its poses start and drive the filter like BoVW's."""
    from geometry_msgs.msg import PoseWithCovarianceStamped

    from geoloc_ros.nodes.common import reliable_qos

    fusion_yaml = tmp_path / "fusion.yaml"
    fusion_yaml.write_text("pose_sources:\n  lidar: {covariance_scale: 1.0}\n")
    node, helper, executor = fusion_node_and_helper(
        ros_context,
        "fusion_lidar_helper",
        fusion_config=str(fusion_yaml),
        pose_inputs=["lidar=/test/lidar_pose"],
    )
    pub = helper.create_publisher(PoseWithCovarianceStamped, "/test/lidar_pose", reliable_qos(20))
    fused = []
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(50)
    )
    try:
        assert spin_until(executor, lambda: pub.get_subscription_count() > 0)
        t0 = 3_000_000_000
        stamps = [t0 + i * 100_000_000 for i in range(20)]
        for i, stamp in enumerate(stamps):
            pub.publish(make_pose(stamp, 1.0 * i, 5.0, 0.0))
            spin_until(executor, lambda: False, timeout_s=0.02)
        assert spin_until(executor, lambda: fused and stamp_ns(fused[-1]) == stamps[-1]), (
            node.diagnostics.counters
        )
        position = fused[-1].pose.pose.position
        assert abs(position.x - 19.0) < 0.3 and abs(position.y - 5.0) < 0.3
        assert node.diagnostics.counters.get("received_lidar", 0) >= 15
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def rviz_pose(x, y, yaw, yaw_std_deg=15.0, frame="map"):
    """An operator's pose as RViz's 2D Pose Estimate sends it (stamp 0, 0.5 m and by default 15 deg)."""
    import math

    msg = make_pose(0, x, y, yaw, var=0.25, frame=frame)
    msg.pose.covariance[35] = math.radians(yaw_std_deg) ** 2
    return msg


def test_an_initialpose_that_cannot_initialize_leaves_the_filter_as_it_was(ros_context):
    """An operator's pose in another frame, or more uncertain than ``initialpose_max_*`` (20 deg), is
    counted and ignored: the running filter, its path and its outputs go on (it used to reset the
    filter first). RViz's default 2D Pose Estimate (15 deg of yaw sigma, above the 10 deg that
    automatic start-up needs) is a deliberate command: it restarts the filter there."""
    node, helper, executor = fusion_node_and_helper(ros_context, "fusion_initialpose_helper")
    published, reasons = [], []
    node._publish = published.append
    count_bad_input = node.diagnostics.bad_input
    node.diagnostics.bad_input = lambda kind, reason: (reasons.append(reason), count_bad_input(kind, reason))
    try:
        t0 = 5_000_000_000
        for i in range(10):
            node._on_pose(make_pose(t0 + i * 50_000_000, 0.5 * i, 0.0, 0.0), "bovw")
        assert node.filter.initialized and len(published) == 10
        other_frame = rviz_pose(100.0, 0.0, 0.0, frame="odom")
        too_uncertain = rviz_pose(100.0, 0.0, 0.0, yaw_std_deg=25.0)
        for k, msg in enumerate((other_frame, too_uncertain), start=1):
            node._on_initialpose(msg)
            assert node.filter.initialized, k
            assert node.diagnostics.counters.get("resets", 0) == 0, k
            assert node.diagnostics.counters.get("bad_input_initialpose", 0) == k
        assert "initialpose_max_yaw_std_deg 20.0 deg" in reasons[-1]
        node._on_pose(make_pose(t0 + 10 * 50_000_000, 5.0, 0.0, 0.0), "bovw")
        assert len(published) == 11 and abs(published[-1].pose.translation[0] - 5.0) < 0.3
        # RViz's default restarts the filter there; automatic start-up from the same pose would not.
        node._on_initialpose(rviz_pose(100.0, -40.0, 1.0))
        assert node.diagnostics.counters["resets"] == 1
        assert abs(published[-1].pose.translation[0] - 100.0) < 0.1
        assert abs(published[-1].pose.translation[1] + 40.0) < 0.1
        node._restart("test")
        node._on_pose(make_pose(t0 + 11 * 50_000_000, 5.0, 0.0, 0.0, var=0.25), "bovw")  # yaw 1.1 deg
        assert node.filter.initialized
        node._restart("test")
        bovw_like_rviz = rviz_pose(5.0, 0.0, 0.0)
        bovw_like_rviz.header.stamp.sec = 6
        node._on_pose(bovw_like_rviz, "bovw")
        assert not node.filter.initialized
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_the_initialpose_limits_are_parameters_checked_at_start_up(ros_context):
    """``initialpose_max_yaw_std_deg`` set to automatic start-up's 10 deg refuses RViz's default again;
    a value out of its range stops the node with a message naming it."""
    from geoloc_ros.errors import ConfigError

    node, helper, executor = fusion_node_and_helper(
        ros_context, "fusion_initialpose_limits", initialpose_max_yaw_std_deg=10.0
    )
    try:
        node._on_initialpose(rviz_pose(100.0, -40.0, 1.0))
        assert not node.filter.initialized
        assert node.diagnostics.counters["bad_input_initialpose"] == 1
        node._on_initialpose(rviz_pose(100.0, -40.0, 1.0, yaw_std_deg=9.0))
        assert node.filter.initialized
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()
    for name, value in (("initialpose_max_yaw_std_deg", 0.0), ("initialpose_max_position_std_m", -1.0)):
        with pytest.raises(ConfigError, match=name):
            fusion_node_and_helper(ros_context, "fusion_initialpose_bad", **{name: value})


def test_operator_limits_in_the_fusion_config_are_refused(ros_context, tmp_path):
    """The operator pose's limits are the node's initialpose_max_* parameters, which replace the
    fusion config's: stated there too (pose_sources.initialpose.init_max_*), they would be ignored
    without a word, so the node refuses to start and names both places."""
    from geoloc_ros.errors import ConfigError

    fusion_yaml = tmp_path / "fusion.yaml"
    fusion_yaml.write_text("pose_sources:\n  bovw: {}\n  initialpose: {init_max_yaw_std_deg: 30.0}\n")
    inputs = ["bovw=/test/operator_bovw"]
    with pytest.raises(ConfigError, match=r"initialpose\.init_max_yaw_std_deg.*initialpose_max_yaw_std_deg"):
        fusion_node_and_helper(
            ros_context, "fusion_initialpose_yaml", fusion_config=str(fusion_yaml), pose_inputs=inputs
        )
    # Other settings of the operator's source stay the fusion config's.
    fusion_yaml.write_text("pose_sources:\n  bovw: {}\n  initialpose: {covariance_scale: 2.0}\n")
    node, helper, executor = fusion_node_and_helper(
        ros_context, "fusion_initialpose_yaml_ok", fusion_config=str(fusion_yaml), pose_inputs=inputs
    )
    try:
        operator = node.filter.config.pose_sources["initialpose"]
        assert operator.covariance_scale == 2.0
        assert (operator.init_max_position_std_m, operator.init_max_yaw_std_deg) == (2.0, 20.0)
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_a_time_jump_reset_forgets_the_map_to_odom_waiting_for_odometry(ros_context):
    """A bag loop resets the filter; a map->odom of the old loop that waited for the odometry to reach
    its stamp must not be sent when the new loop's odometry gets there (a ~/reset already forgot it)."""
    from nav_msgs.msg import Odometry

    from geoloc_ros.nodes.messages import ns_to_stamp

    node, helper, executor = fusion_node_and_helper(
        ros_context, "fusion_loop_helper", odom_topic="/test/loop_odom"
    )
    transforms = []
    node.map_odom_pub.publish = transforms.append
    try:
        t0 = 50_000_000_000
        for i in range(10):  # no odometry yet: each map->odom waits for it
            node._on_pose(make_pose(t0 + i * 50_000_000, 0.5 * i, 0.0, 0.0), "bovw")
        assert node._pending_map_odom is not None
        for i in range(5):  # the loop: 30 s back, poses too uncertain to start the filter from
            node._on_pose(make_pose(t0 - 30 * 10**9 + i * 50_000_000, 0.0, 0.0, 0.0, var=100.0), "bovw")
        assert node.diagnostics.counters.get("resets", 0) >= 1 and not node.filter.initialized
        for i in (8, 10):  # the new loop's odometry reaches the old pose's stamp (t0 + 9 * 50 ms)
            odom = Odometry()
            odom.header.stamp = ns_to_stamp(t0 + i * 50_000_000)
            odom.pose.pose.orientation.w = 1.0
            node._on_odom(odom)
        assert transforms == []
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_motion_messages_that_state_no_covariance_get_the_configured_uncertainty(ros_context):
    """sensor_msgs: an all-zero covariance means 'unknown', -1 in its first element 'not measured'.
    Taken as variance 0 the filter trusted such a yaw rate or speed exactly."""
    import math

    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Imu

    node, helper, executor = fusion_node_and_helper(
        ros_context, "fusion_motion_helper", odom_topic="/test/odom", imu_topic="/test/imu"
    )
    fed = []
    unknown_yaw_rate_var = math.radians(node.config.unknown_yaw_rate_std_dps) ** 2
    add_motion = node.filter.add_motion
    node.filter.add_motion = lambda m: fed.append(m) or add_motion(m)
    try:
        imu = Imu()
        imu.header.stamp.sec = 10
        imu.angular_velocity.z = 0.1
        node._on_imu(imu)  # all zero: unknown
        assert fed[-1].yaw_rate_variance == pytest.approx(unknown_yaw_rate_var)
        imu.angular_velocity_covariance[0] = -1.0  # no angular velocity in this message
        node._on_imu(imu)
        assert len(fed) == 1 and node.diagnostics.counters["imu_without_angular_velocity"] == 1
        imu.angular_velocity_covariance = [0.0] * 8 + [4e-4]
        node._on_imu(imu)
        assert fed[-1].yaw_rate_variance == 4e-4
        odom = Odometry()
        odom.header.stamp.sec = 10
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = 5.0
        node._on_odom(odom)  # all zero: unknown
        assert fed[-1].speed_variance == pytest.approx(node.config.unknown_speed_std_mps**2)
        assert fed[-1].yaw_rate_variance == pytest.approx(unknown_yaw_rate_var)
        cov = [0.0] * 36
        cov[0], cov[35] = 0.01, 1e-4
        odom.twist.covariance = cov
        node._on_odom(odom)
        assert (fed[-1].speed_variance, fed[-1].yaw_rate_variance) == (0.01, 1e-4)
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_diagnostics_warn_while_measurements_arrive_and_nothing_is_fused(ros_context):
    """Poses that all fail (another frame than the filter's) are rejected, not bad inputs: the status
    must still say that inputs arrive and nothing is published (it said OK)."""
    from diagnostic_msgs.msg import DiagnosticStatus

    node, helper, executor = fusion_node_and_helper(ros_context, "fusion_diag_helper")
    try:
        node.diagnostics.status()
        for i in range(5):
            node._on_pose(make_pose(10**9 + i * 10**8, 0.5 * i, 0.0, 0.0, frame="odom"), "bovw")
        status = node.diagnostics.status()
        assert status.level == DiagnosticStatus.WARN and "no pose" in status.message
        for i in range(5, 10):
            node._on_pose(make_pose(10**9 + i * 10**8, 0.5 * i, 0.0, 0.0), "bovw")
        assert node.diagnostics.status().level == DiagnosticStatus.OK
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()


def test_a_pose_with_an_all_zero_covariance_is_refused(ros_context):
    """The message's default covariance (all zero: nobody filled it in) taken as exact collapsed the
    fused covariance to zero, and every later pose failed the gate."""
    node, helper, executor = fusion_node_and_helper(ros_context, "fusion_zero_cov_helper")
    try:
        for i in range(5):
            node._on_pose(make_pose(10**9 + i * 10**8, 0.5 * i, 0.0, 0.0), "bovw")
        before = node.filter.state[2][:3, :3]
        unset = make_pose(10**9 + 5 * 10**8, 2.5, 0.0, 0.0)
        unset.pose.covariance = [0.0] * 36
        node._on_pose(unset, "bovw")
        assert node.diagnostics.counters["bad_input_bovw"] == 1
        np.testing.assert_array_equal(node.filter.state[2][:3, :3], before)
        unset.header.stamp.sec = 0  # an operator's pose without covariance: not a restart
        node._on_initialpose(unset)
        assert node.diagnostics.counters["bad_input_initialpose"] == 1 and node.filter.initialized
    finally:
        executor.shutdown()
        helper.destroy_node()
        node.destroy_node()
