"""All geoloc_ros nodes in one process, configured from the same ROS parameter file as the launch file.

For machines without ``ros2 launch`` (and for tests): ``geoloc stack`` builds the nodes with their
parameters from ``config/geoloc.yaml`` (``<node>: ros__parameters: {...}``), optionally replays a bag
with ``/clock`` (every node then runs on ``use_sim_time``), and spins them on one single-threaded
executor (:func:`stack_executor`). The heavy work of the localizers runs on their own worker threads.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import read_yaml
from geoloc_ros.errors import ConfigError
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_POSENET

# node name -> "module:class"; imported lazily so a stack without PoseNet never loads onnxruntime.
NODE_CLASSES = {
    "camera_ingest": "geoloc_ros.nodes.camera_ingest:CameraIngestNode",
    "bovw_localizer": "geoloc_ros.nodes.bovw_localizer:BovwLocalizerNode",
    "posenet_localizer": "geoloc_ros.nodes.posenet_localizer:PoseNetLocalizerNode",
    "pose_fusion": "geoloc_ros.nodes.pose_fusion:PoseFusionNode",
}
STACK_ORDER = ("camera_ingest", "bovw_localizer", "posenet_localizer", "pose_fusion")


def flatten_parameters(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"io": {"image_topic": x}}`` -> ``{"io.image_topic": x}`` (ROS' own nesting rule)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_parameters(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_parameter_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Node name -> flat parameters, from a ROS 2 parameter YAML (``/**`` entries apply to all nodes)."""
    p = Path(path)
    data = read_yaml(p, "parameter file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of node names")
    shared: dict[str, Any] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for name, section in data.items():
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ConfigError(f"{p}: {name}: expected a 'ros__parameters' mapping")
        params = flatten_parameters(section["ros__parameters"] or {})
        if name in ("/**", "**"):
            shared.update(params)
        else:
            nodes[name.lstrip("/")] = params
    return {name: {**shared, **params} for name, params in nodes.items()} | (
        {"/**": shared} if shared else {}
    )


def node_class(name: str) -> Callable[..., Node]:
    try:
        module_name, attr = NODE_CLASSES[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown node {name!r} (known: {', '.join(NODE_CLASSES)})") from None
    cls: Callable[..., Node] = getattr(importlib.import_module(module_name), attr)
    return cls


def build_stack(
    parameters: Mapping[str, Mapping[str, Any]],
    nodes: tuple[str, ...] = STACK_ORDER,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    use_sim_time: bool = False,
    context: Any = None,
) -> list[Node]:
    """Instantiate ``nodes`` with their parameters (file values, then ``overrides``)."""
    built: list[Node] = []
    shared = dict(parameters.get("/**", {}))
    try:
        for name in nodes:
            values = {**shared, **parameters.get(name, {}), **(overrides or {}).get(name, {})}
            values["use_sim_time"] = use_sim_time
            params = [Parameter(key, value=value) for key, value in values.items()]
            built.append(node_class(name)(context=context, parameter_overrides=params))
    except BaseException:
        destroy_nodes(built)
        raise
    return built


def stack_overrides(
    map_bundle: str | Path,
    map_camera: PinholeCamera,
    posenet_model: str | Path | None = None,
    mounting: str | Path | None = None,
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """The nodes to run and the parameters that wire them to one map (and PoseNet model, and mounting).

    ``camera_ingest`` processes frames in the map's camera model, which the localizers need (the BoVW
    node would otherwise resample every frame). Without a PoseNet model its node is left out and
    fusion does not subscribe to it.
    """
    overrides: dict[str, dict[str, Any]] = {
        "camera_ingest": {"processing_width": map_camera.width, "processing_hfov_deg": map_camera.hfov_deg},
        "bovw_localizer": {"map_bundle": str(map_bundle)},
        "posenet_localizer": {"map_bundle": str(map_bundle)},
        "pose_fusion": {"map_bundle": str(map_bundle)},
    }
    if posenet_model is None:
        from geoloc_ros.nodes.pose_fusion import DEFAULT_POSE_INPUTS

        nodes = tuple(n for n in STACK_ORDER if n != "posenet_localizer")
        overrides["pose_fusion"]["pose_inputs"] = [
            entry for entry in DEFAULT_POSE_INPUTS if not entry.startswith(f"{SOURCE_POSENET}=")
        ]
    else:
        nodes = STACK_ORDER
        overrides["posenet_localizer"]["model"] = str(posenet_model)
    if mounting is not None:
        for name in ("bovw_localizer", "posenet_localizer"):
            overrides[name]["io.camera_mounting"] = str(mounting)
    return nodes, overrides


def destroy_nodes(nodes: Sequence[Node]) -> None:
    """Stop every node's worker threads (``close``), then destroy the nodes."""
    for node in nodes:
        close = getattr(node, "close", None)
        if callable(close):
            close()
    for node in nodes:
        node.destroy_node()


@dataclass
class StackRun:
    """What ``run_stack`` saw: every pose the stack published (by source) and the replayed messages."""

    estimates: dict[str, list[PoseEstimate]]
    replayed_messages: int | None


# Seconds the stack keeps spinning after the bag's last message, so the last frames reach fusion.
DRAIN_S = 2.0


def run_stack(
    parameters: Mapping[str, Mapping[str, Any]],
    nodes: tuple[str, ...],
    overrides: Mapping[str, Mapping[str, Any]],
    map_bundle: str | Path,
    *,
    bag: str | Path | None = None,
    rate: float = 1.0,
    echo: Callable[[str], None] = print,
) -> StackRun:
    """``geoloc stack``: init rclpy, build ``nodes`` (plus a bag replay with /clock when ``bag`` is
    given) and a recorder of their poses, spin until Ctrl-C or the end of the bag (then drain for
    :data:`DRAIN_S`), tear everything down and return what was published."""
    import rclpy

    from geoloc_ros.nodes.recorder import EstimateRecorder, published_pose_topics

    rclpy.init()
    built: list = []
    replay = None
    recorder = None
    try:
        built = build_stack(parameters, nodes, overrides, use_sim_time=bag is not None)
        recorder = EstimateRecorder(published_pose_topics(built))
        if bag is not None:
            from geoloc_ros.nodes.replay import BagReplayNode

            replay = BagReplayNode(
                parameter_overrides=[
                    Parameter("bag", value=str(bag)),
                    Parameter("rate", value=float(rate)),
                    Parameter("map_bundle", value=str(map_bundle)),
                ]
            )
            built.append(replay)
        executor = stack_executor([*built, recorder])
        echo(f"running {', '.join(n.get_name() for n in built)}; Ctrl-C to stop")
        while rclpy.ok() and not (replay is not None and replay.done.is_set()):
            executor.spin_once(timeout_sec=0.2)
        drain_until = time.monotonic() + DRAIN_S
        while replay is not None and rclpy.ok() and time.monotonic() < drain_until:
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        destroy_nodes(built)
        estimates = recorder.estimates if recorder is not None else {}
        if recorder is not None:
            recorder.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return StackRun(estimates, replay.published if replay is not None else None)


def stack_executor(nodes: list[Node], context: Any = None) -> SingleThreadedExecutor:
    """The executor for nodes sharing one process.

    Single-threaded on purpose: the node callbacks only convert messages and hand frames to the
    localizers' worker threads. rclpy's MultiThreadedExecutor busy-loops while a ready entity waits
    for its node's mutually exclusive callback group; that loop held the GIL for ~60 % of a core and
    starved the workers (on the tiny drive the BoVW localizer dropped 40 of 72 frames; single-threaded
    it drops none).
    """
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    return executor
