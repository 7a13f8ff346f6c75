"""Launch the geoloc_ros stack: camera ingestion, BoVW (and PoseNet) localizers, fusion (and optionally RViz
and a bag replay).

    ros2 launch geoloc_ros geoloc.launch.py map_bundle:=/maps/town
    ros2 launch geoloc_ros geoloc.launch.py map_bundle:=/maps/town posenet_model:=/maps/posenet.onnx \\
        extrinsics:=tf namespace:=geoloc remappings:=/camera/image_raw=/front/image_raw
    ros2 launch geoloc_ros geoloc.launch.py map_bundle:=... bag:=/data/drive use_sim_time:=true rviz:=true

Every node reads its parameters from ``config`` (default: the package's config/geoloc.yaml, the same file
``geoloc stack`` reads); the arguments below override the most common ones. The nodes run with the
shipped Fast DDS profile (``dds_config``, config/fastdds.xml: shared memory sized for camera frames).
What the arguments mean for the nodes (processing camera from the map, PoseNet only with a model,
extrinsics) is
:func:`geoloc_ros.nodes.launch_plan.launch_plan`, shared with ``geoloc stack`` and tested without launch.
"""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition, LaunchConfigurationNotEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

PACKAGE = "geoloc_ros"

# name -> (default, description); the defaults that need the package share are filled in below.
ARGUMENTS = {
    "config": (None, "ROS parameter file for all nodes"),
    "map_bundle": ("", "map bundle directory built by `geoloc map build` (required)"),
    "posenet_model": ("", "PoseNet ONNX model; empty = no PoseNet localizer"),
    "camera_mounting": ("", "camera_mounting.yaml (base_link -> camera); the fallback when extrinsics:=tf"),
    "extrinsics": ("yaml", "camera mounting from 'tf' (base_frame -> the image's frame_id) or 'yaml'"),
    "base_frame": ("", "vehicle frame (empty = the parameter file's, base_link)"),
    "namespace": ("", "namespace of the nodes"),
    "remappings": ("", "topic remappings FROM=TO,FROM=TO applied to every node"),
    "nodes": ("all", "nodes to start: all, or a comma list of camera_ingest,bovw_localizer,..."),
    "lifecycle": ("false", "start the lifecycle variants (configure/activate by a lifecycle manager)"),
    "use_sim_time": ("false", "follow /clock (bag replay)"),
    "bag": ("", "rosbag2 to replay with --clock"),
    "rviz": ("false", "start RViz with config/geoloc.rviz"),
    "dds_config": ("", "DDS profile XML (Fast DDS; Cyclone DDS when RMW_IMPLEMENTATION names it)"),
}


def _nodes(context: LaunchContext, share: Path) -> list:
    from geoloc_ros.nodes.launch_plan import dds_environment, launch_plan

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    plan = launch_plan(
        map_bundle=value("map_bundle"),
        posenet_model=value("posenet_model"),
        camera_mounting=value("camera_mounting"),
        extrinsics=value("extrinsics"),
        nodes=value("nodes"),
        remappings=value("remappings"),
        base_frame=value("base_frame"),
    )
    use_sim_time = value("use_sim_time").lower() in ("true", "1")
    lifecycle = value("lifecycle").lower() in ("true", "1")
    dds = dds_environment(value("dds_config"), os.environ.get("RMW_IMPLEMENTATION", ""))
    actions: list = [SetEnvironmentVariable(name, text) for name, text in dds.items()]
    for node in plan:
        actions.append(
            Node(
                package=PACKAGE,
                executable=node.name,
                name=node.name,
                namespace=value("namespace"),
                parameters=[value("config"), node.parameters, {"use_sim_time": use_sim_time}],
                remappings=node.remappings,
                arguments=["--lifecycle"] if lifecycle else [],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    defaults = {
        "config": str(share / "config" / "geoloc.yaml"),
        # The shipped Fast DDS profile: shared memory with room for full camera frames (docs/ros.md).
        "dds_config": str(share / "config" / "fastdds.xml"),
    }
    args = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=description)
        for name, (default, description) in ARGUMENTS.items()
    ]
    extras = [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", str(share / "config" / "geoloc.rviz")],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock"],
            condition=LaunchConfigurationNotEquals("bag", ""),
            output="screen",
        ),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_nodes, args=[share]), *extras])
