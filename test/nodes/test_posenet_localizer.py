"""posenet_localizer on real rclpy topics: poses and temporal poses per frame, bad frames survived."""

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def test_posenet_node_answers_and_survives_bad_input(ros_context, spin_until, tiny_posenet_model):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from geoloc_ros.camera import PinholeCamera
    from geoloc_ros.io.images import array_to_image_fields
    from geoloc_ros.nodes.common import reliable_qos, sensor_qos
    from geoloc_ros.nodes.posenet_localizer import PoseNetLocalizerNode

    node = PoseNetLocalizerNode(
        context=ros_context, parameter_overrides=[Parameter("model", value=str(tiny_posenet_model))]
    )
    assert node.predictor.provider == "CPUExecutionProvider"
    helper = Node("posenet_test_helper", context=ros_context)
    image_pub = helper.create_publisher(Image, "/geoloc/camera/image_rect", sensor_qos(1))
    info_pub = helper.create_publisher(CameraInfo, "/geoloc/camera/camera_info", sensor_qos(1))
    poses, temporal = [], []
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/posenet/pose", poses.append, reliable_qos(20)
    )
    helper.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/posenet/pose_temporal", temporal.append, reliable_qos(20)
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    camera = PinholeCamera.from_hfov(160, 120, 57.6)
    rng = np.random.default_rng(1)

    def frame(stamp_ns, image=None):
        image = rng.integers(0, 255, (120, 160, 3), np.uint8) if image is None else image
        msg = Image(**array_to_image_fields(image, "bgr8"))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        return msg

    try:
        assert spin_until(
            executor,
            lambda: image_pub.get_subscription_count() > 0 and node.pose_pub.get_subscription_count() > 0,
        )
        t0 = 7 * 10**9
        for i in range(6):
            info_pub.publish(CameraInfo(**camera.camera_info_fields()))
            image_pub.publish(frame(t0 + i * 50_000_000))
            spin_until(executor, lambda: False, timeout_s=0.1)
        assert spin_until(executor, lambda: len(poses) >= 3 and len(temporal) >= 3)
        msg = poses[-1]
        assert msg.header.frame_id == "map"
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp in {t0 + i * 50_000_000 for i in range(6)}
        cov = np.asarray(msg.pose.covariance).reshape(6, 6)
        assert cov[0, 0] > 0 and cov[1, 1] > 0 and cov[5, 5] > 0 and cov[2, 2] >= 1e5  # z not estimated
        # A black frame and one whose size disagrees with camera_info: counted, skipped.
        image_pub.publish(frame(t0 + 10**9, np.zeros((120, 160, 3), np.uint8)))
        spin_until(executor, lambda: False, timeout_s=0.3)
        image_pub.publish(frame(t0 + 2 * 10**9, rng.integers(0, 255, (60, 80, 3), np.uint8)))
        assert spin_until(executor, lambda: node.diagnostics.counters.get("bad_input_image", 0) >= 2)
        n = len(poses)
        image_pub.publish(frame(t0 + 3 * 10**9))
        assert spin_until(executor, lambda: len(poses) > n)
    finally:
        executor.shutdown()
        node.close()
        helper.destroy_node()
        node.destroy_node()


def test_posenet_node_takes_extrinsics_from_tf_or_the_yaml_and_says_when_it_has_neither(
    ros_context, spin_until, tiny_posenet_model, tmp_path
):
    """io.extrinsics: tf. Nothing publishes the camera in TF here (and the PyPI wheels have no tf2_ros):
    with a mounting YAML the node falls back to it; without one every frame is refused, counted."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from geoloc_ros.config import dump_yaml
    from geoloc_ros.geometry.frames import CameraMounting
    from geoloc_ros.io.images import array_to_image_fields
    from geoloc_ros.nodes.common import reliable_qos, sensor_qos
    from geoloc_ros.nodes.posenet_localizer import PoseNetLocalizerNode

    mounting = CameraMounting(translation=(1.5, 0.0, -0.3))
    yaml_path = tmp_path / "camera_mounting.yaml"
    yaml_path.write_text(dump_yaml(mounting))
    rng = np.random.default_rng(2)

    def run(with_yaml):
        params = [Parameter("model", value=str(tiny_posenet_model)), Parameter("io.extrinsics", value="tf")]
        params.append(Parameter("io.camera_mounting", value=str(yaml_path) if with_yaml else ""))
        params.append(Parameter("temporal", value=False))
        node = PoseNetLocalizerNode(context=ros_context, parameter_overrides=params)
        helper = Node("posenet_tf_helper", context=ros_context)
        image_pub = helper.create_publisher(Image, "/geoloc/camera/image_rect", sensor_qos(1))
        poses = []
        helper.create_subscription(
            PoseWithCovarianceStamped, "/geoloc/posenet/pose", poses.append, reliable_qos(20)
        )
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        executor.add_node(helper)
        try:
            assert spin_until(executor, lambda: image_pub.get_subscription_count() > 0)
            for i in range(3):
                msg = Image(**array_to_image_fields(rng.integers(0, 255, (120, 160, 3), np.uint8), "bgr8"))
                msg.header.stamp.sec = 5 + i
                msg.header.frame_id = "front_camera_optical"
                image_pub.publish(msg)
                spin_until(executor, lambda: False, timeout_s=0.2)
            if with_yaml:
                assert spin_until(executor, lambda: len(poses) >= 1)
                assert np.allclose(node.predictor.t_base_optical.translation, [1.5, 0.0, -0.3])
            else:
                assert spin_until(
                    executor, lambda: node.diagnostics.counters.get("frames_without_extrinsics", 0) >= 1
                )
                assert not poses
        finally:
            executor.shutdown()
            node.close()
            helper.destroy_node()
            node.destroy_node()

    run(with_yaml=True)
    run(with_yaml=False)


def test_posenet_node_refuses_a_model_trained_on_another_map(
    ros_context, tiny_posenet_model, tiny_map_dir, tmp_path
):
    import json

    import onnx
    from rclpy.parameter import Parameter

    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.posenet_localizer import PoseNetLocalizerNode
    from geoloc_ros.posenet.errors import ModelMapMismatchError
    from geoloc_ros.posenet.modelinfo import METADATA_KEY

    bundle = MapBundle.open(tiny_map_dir, verify="none")

    def bound_to(map_id):
        """The tiny model as if exported after training on the map ``map_id`` (same origin)."""
        proto = onnx.load(str(tiny_posenet_model))
        entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        entry.value = json.dumps({**json.loads(entry.value), "map_id": map_id, "map_origin": None})
        path = tmp_path / f"model_{map_id}.onnx"
        onnx.save(proto, str(path))
        return path

    def node(model, allow=False):
        params = [
            Parameter("model", value=str(model)),
            Parameter("map_bundle", value=str(tiny_map_dir)),
            Parameter("allow_map_mismatch", value=allow),
        ]
        return PoseNetLocalizerNode(context=ros_context, parameter_overrides=params)

    other = bound_to("0123456789abcdef")
    with pytest.raises(ModelMapMismatchError) as refused:
        node(other)
    assert str(other) in str(refused.value) and str(tiny_map_dir) in str(refused.value)
    assert f"0123456789abcdef vs {bundle.bundle_id}" in str(refused.value)
    for accepted in (node(other, allow=True), node(bound_to(bundle.bundle_id))):
        accepted.close()
        accepted.destroy_node()
