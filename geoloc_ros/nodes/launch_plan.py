"""What ``launch/geoloc.launch.py`` starts, as plain functions (tested without ``launch``: not on PyPI).

The launch file reads its arguments and hands them to :func:`launch_plan`, which returns, per node, the
parameters that override ``config/geoloc.yaml`` and the topic remappings, wired the way ``geoloc stack``
wires them (:func:`geoloc_ros.nodes.stack.stack_overrides`): the processing camera from the map bundle,
PoseNet only when a model is given, the camera mounting YAML or extrinsics from TF.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoloc_ros.errors import ConfigError, GeolocError
from geoloc_ros.nodes.stack import STACK_ORDER, stack_overrides

LOCALIZERS = ("bovw_localizer", "posenet_localizer")
EXTRINSICS = ("yaml", "tf")


@dataclass(frozen=True)
class LaunchedNode:
    """One node of the launch: executable (= node name), parameter overrides, remappings."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)


def parse_node_list(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated subset of the nodes, in stack order."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words or words == ["all"]:
        return STACK_ORDER
    unknown = [w for w in words if w not in STACK_ORDER]
    if unknown:
        raise ConfigError(f"launch argument nodes: unknown {unknown} (known: all, {', '.join(STACK_ORDER)})")
    return tuple(n for n in STACK_ORDER if n in words)


def parse_remappings(text: str) -> list[tuple[str, str]]:
    """``from=to`` pairs separated by commas: ``/camera/image_raw=/front/image,/gps/fix=/ublox/fix``."""
    pairs = []
    for item in (w.strip() for w in text.split(",")):
        if not item:
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigError(f"launch argument remappings: {item!r} is not FROM=TO")
        pairs.append((source.strip(), target.strip()))
    return pairs


def dds_environment(dds_config: str, rmw_implementation: str = "") -> dict[str, str]:
    """Environment that makes the middleware read ``dds_config`` (Cyclone DDS or Fast DDS by the RMW)."""
    if not dds_config:
        return {}
    path = Path(dds_config)
    if not path.is_file():
        raise ConfigError(f"launch argument dds_config: {path} not found")
    if "cyclonedds" in rmw_implementation:
        return {"CYCLONEDDS_URI": f"file://{path.resolve()}"}
    # Fast DDS 2.x reads the FASTRTPS_ name, 3.x the FASTDDS_ one.
    return {
        name: str(path.resolve())
        for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
    }


def launch_plan(
    map_bundle: str,
    posenet_model: str = "",
    camera_mounting: str = "",
    extrinsics: str = "yaml",
    nodes: str = "all",
    remappings: str = "",
    base_frame: str = "",
) -> list[LaunchedNode]:
    """The nodes to start and their parameter overrides (on top of the parameter file).

    Raises :class:`ConfigError` naming the launch argument when one is wrong.
    """
    from geoloc_ros.mapping.map import MapBundle  # the launch process only reads the bundle's camera

    if not map_bundle:
        raise ConfigError("launch argument map_bundle is required (a bundle built by `geoloc map build`)")
    if extrinsics not in EXTRINSICS:
        raise ConfigError(f"launch argument extrinsics: {extrinsics!r} is not one of {EXTRINSICS}")
    if camera_mounting and not Path(camera_mounting).is_file():
        raise ConfigError(f"launch argument camera_mounting: {camera_mounting} not found")
    if posenet_model and not Path(posenet_model).is_file():
        raise ConfigError(f"launch argument posenet_model: {posenet_model} not found")
    try:
        camera = MapBundle.open(map_bundle, verify="none").camera
    except (OSError, GeolocError) as exc:
        raise ConfigError(f"launch argument map_bundle: {exc}") from None
    wired, overrides = stack_overrides(map_bundle, camera, posenet_model or None, camera_mounting or None)
    chosen = parse_node_list(nodes)
    if "posenet_localizer" in chosen and "posenet_localizer" not in wired:
        if nodes.strip() != "all":
            raise ConfigError("launch argument nodes: posenet_localizer needs posenet_model:=MODEL.onnx")
        chosen = tuple(n for n in chosen if n in wired)
    for name in LOCALIZERS:
        overrides[name]["io.extrinsics"] = extrinsics
        if base_frame:
            overrides[name]["io.base_frame"] = base_frame
    if base_frame:
        overrides["pose_fusion"]["base_frame"] = base_frame
    remaps = parse_remappings(remappings)
    return [LaunchedNode(name, dict(overrides.get(name, {})), list(remaps)) for name in chosen]
