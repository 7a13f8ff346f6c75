"""Fixtures of the node tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def echo_localizer():
    """``echo_localizer(name, pose_topic, localize, **node_kwargs)``: an ImageLocalizerNode (started:
    subscribed, worker running) whose ``localize(image, camera, stamp_ns)`` is the given function; the
    base's plumbing without a map or a model. The test closes and destroys it."""
    from geoloc_ros.config import StrictModel
    from geoloc_ros.nodes.localizer_base import ImageLocalizerNode, LocalizerIOConfig

    def make(name, topic, localize, **node_kwargs):
        class EchoConfig(StrictModel):
            pose_topic: str = topic
            fix_topic: str = ""
            io: LocalizerIOConfig = LocalizerIOConfig()

        class EchoLocalizer(ImageLocalizerNode):
            config_model = EchoConfig

            def __init__(self, **kwargs):
                super().__init__(name, **kwargs)
                self.start()

            def localize(self, image, camera, stamp_ns):
                return localize(image, camera, stamp_ns)

        return EchoLocalizer(**node_kwargs)

    return make


@pytest.fixture
def replay_node(ros_context):
    """``replay_node(bag, **parameters)``: a BagReplayNode (``geoloc replay``) of ``bag`` with these
    parameter values (a keyword per parameter); the test destroys it."""
    from rclpy.parameter import Parameter

    from geoloc_ros.nodes.replay import BagReplayNode

    def make(bag, **parameters):
        values = {"bag": str(bag), **parameters}
        overrides = [Parameter(name, value=value) for name, value in values.items()]
        return BagReplayNode(context=ros_context, parameter_overrides=overrides)

    return make


@pytest.fixture
def tiny_stack(
    ros_context, tiny_sim_dir: Path, tiny_map_dir: Path, tiny_posenet_model: Path, repo_root: Path
):
    """The nodes of ``geoloc stack`` (camera ingestion, both localizers, fusion) on the tiny map, with
    the shipped parameter file and the tiny drive's mounting, on simulated time; the test destroys them."""
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.stack import build_stack, load_parameter_file, stack_overrides

    bundle = MapBundle.open(tiny_map_dir, verify="sizes")
    names, overrides = stack_overrides(
        tiny_map_dir, bundle.camera, tiny_posenet_model, tiny_sim_dir / "drive" / "camera_mounting.yaml"
    )
    parameters = load_parameter_file(repo_root / "config" / "geoloc.yaml")
    return build_stack(parameters, names, overrides, use_sim_time=True, context=ros_context)
