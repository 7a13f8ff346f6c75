"""Launch the geoloc_ros stack: camera ingestion, BoVW and PoseNet localizers, fusion (and optionally RViz
and a bag replay).

    ros2 launch geoloc_ros geoloc.launch.py map_bundle:=/maps/town posenet_model:=/maps/posenet.onnx
    ros2 launch geoloc_ros geoloc.launch.py map_bundle:=... bag:=/data/drive use_sim_time:=true rviz:=true

Every node reads its parameters from ``config`` (default: the package's config/geoloc.yaml, the same
file ``geoloc stack`` reads); the arguments below override the most common ones. The nodes run with the
shipped Fast DDS profile (``dds_profile``, config/fastdds.xml: shared memory sized for camera frames).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.conditions import IfCondition, LaunchConfigurationNotEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "geoloc_ros"


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    config = LaunchConfiguration("config")
    use_sim_time = LaunchConfiguration("use_sim_time")
    common = [config, {"use_sim_time": use_sim_time}]

    args = [
        DeclareLaunchArgument(
            "config",
            default_value=str(share / "config" / "geoloc.yaml"),
            description="ROS parameter file for all nodes",
        ),
        DeclareLaunchArgument("map_bundle", description="map bundle directory built by `geoloc map build`"),
        DeclareLaunchArgument(
            "posenet_model",
            default_value=str(share / "models" / "posenet_demo.onnx"),
            description="PoseNet ONNX model",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="follow /clock (bag replay)"
        ),
        DeclareLaunchArgument("bag", default_value="", description="rosbag2 to replay with --clock"),
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start RViz with config/geoloc.rviz"
        ),
        DeclareLaunchArgument("posenet", default_value="true", description="start the PoseNet localizer"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=str(share / "config" / "fastdds.xml"),
            description="Fast DDS profile for camera-size images between processes (docs/ros.md)",
        ),
        # Every node of this launch (and ros2 bag play) uses the shipped Fast DDS profile: shared
        # memory with room for full frames. Other RMWs ignore the variable.
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")),
    ]

    nodes = [
        Node(
            package=PACKAGE,
            executable="camera_ingest",
            name="camera_ingest",
            parameters=common,
            output="screen",
        ),
        Node(
            package=PACKAGE,
            executable="bovw_localizer",
            name="bovw_localizer",
            parameters=[*common, {"map_bundle": LaunchConfiguration("map_bundle")}],
            output="screen",
        ),
        Node(
            package=PACKAGE,
            executable="posenet_localizer",
            name="posenet_localizer",
            parameters=[
                *common,
                {
                    "model": LaunchConfiguration("posenet_model"),
                    "map_bundle": LaunchConfiguration("map_bundle"),
                },
            ],
            condition=IfCondition(LaunchConfiguration("posenet")),
            output="screen",
        ),
        Node(
            package=PACKAGE,
            executable="pose_fusion",
            name="pose_fusion",
            parameters=[*common, {"map_bundle": LaunchConfiguration("map_bundle")}],
            output="screen",
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", str(share / "config" / "geoloc.rviz")],
            parameters=[{"use_sim_time": use_sim_time}],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock"],
            condition=LaunchConfigurationNotEquals("bag", ""),
            output="screen",
        ),
    ]
    return LaunchDescription([*args, *nodes])
