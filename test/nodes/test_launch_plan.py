"""What launch/geoloc.launch.py starts: its plain functions here, and its declared arguments where `launch`
is importable (a ROS installation; the PyPI wheels do not have it)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from geoloc_ros.errors import ConfigError
from geoloc_ros.nodes.launch_plan import dds_environment, launch_plan, parse_node_list, parse_remappings
from geoloc_ros.nodes.stack import STACK_ORDER

REPO = Path(__file__).resolve().parents[2]


def test_node_list_and_remappings_are_parsed_and_checked():
    assert parse_node_list("all") == STACK_ORDER
    assert parse_node_list("pose_fusion, camera_ingest") == ("camera_ingest", "pose_fusion")
    with pytest.raises(ConfigError, match="nodes: unknown \\['fusion'\\]"):
        parse_node_list("camera_ingest,fusion")
    assert parse_remappings("/camera/image_raw=/front/image, /gps/fix=/ublox/fix") == [
        ("/camera/image_raw", "/front/image"),
        ("/gps/fix", "/ublox/fix"),
    ]
    assert parse_remappings("") == []
    with pytest.raises(ConfigError, match="remappings: '/gps/fix' is not FROM=TO"):
        parse_remappings("/gps/fix")


def test_dds_profile_goes_to_the_middleware_in_use(tmp_path):
    profile = tmp_path / "dds.xml"
    profile.write_text("<dds/>")
    assert dds_environment("") == {}
    assert dds_environment(str(profile)) == {
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile),
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
    }
    assert dds_environment(str(profile), "rmw_cyclonedds_cpp") == {"CYCLONEDDS_URI": f"file://{profile}"}
    with pytest.raises(ConfigError, match="dds_config"):
        dds_environment(str(tmp_path / "missing.xml"))


def test_launch_plan_wires_the_map_camera_posenet_and_extrinsics(tiny_map_dir, tmp_path, node_parameters):
    from geoloc_ros.mapping.map import MapBundle

    camera = MapBundle.open(tiny_map_dir, verify="none").camera
    plan = {n.name: n for n in launch_plan(str(tiny_map_dir))}
    # PoseNet is off without a model, and fusion does not wait for it.
    assert tuple(plan) == ("camera_ingest", "bovw_localizer", "pose_fusion")
    assert plan["pose_fusion"].parameters["pose_inputs"] == ["bovw=/geoloc/bovw/pose"]
    # The processing camera is the map's, as `geoloc stack` sets it.
    assert plan["camera_ingest"].parameters["processing_width"] == camera.width
    assert plan["camera_ingest"].parameters["processing_hfov_deg"] == pytest.approx(camera.hfov_deg)
    assert plan["bovw_localizer"].parameters["io.extrinsics"] == "yaml"

    model, mounting = tmp_path / "model.onnx", tmp_path / "camera_mounting.yaml"
    model.write_bytes(b"onnx")
    mounting.write_text("translation: [1.2, 0.0, -0.3]\n")
    plan = {
        n.name: n
        for n in launch_plan(
            str(tiny_map_dir),
            posenet_model=str(model),
            camera_mounting=str(mounting),
            extrinsics="tf",
            remappings="/camera/image_raw=/front/image_raw",
            base_frame="chassis",
        )
    }
    assert tuple(plan) == STACK_ORDER
    assert plan["posenet_localizer"].parameters["model"] == str(model)
    for name in ("bovw_localizer", "posenet_localizer"):
        assert plan[name].parameters["io.extrinsics"] == "tf"
        assert plan[name].parameters["io.camera_mounting"] == str(mounting)
        assert plan[name].parameters["io.base_frame"] == "chassis"
    assert plan["pose_fusion"].parameters["base_frame"] == "chassis"
    assert all(n.remappings == [("/camera/image_raw", "/front/image_raw")] for n in plan.values())
    # Every parameter the plan sets is one the node declares.
    declared = node_parameters
    for node in plan.values():
        assert set(node.parameters) <= declared[node.name], node.name
    only = launch_plan(str(tiny_map_dir), nodes="bovw_localizer,pose_fusion")
    assert [n.name for n in only] == ["bovw_localizer", "pose_fusion"]


def test_launch_plan_names_the_wrong_argument(tiny_map_dir, tmp_path):
    with pytest.raises(ConfigError, match="map_bundle is required"):
        launch_plan("")
    with pytest.raises(ConfigError, match="launch argument map_bundle"):
        launch_plan(str(tmp_path / "no_map"))
    with pytest.raises(ConfigError, match=r"posenet_model: .*missing\.onnx not found"):
        launch_plan(str(tiny_map_dir), posenet_model=str(tmp_path / "missing.onnx"))
    with pytest.raises(ConfigError, match="extrinsics: 'urdf'"):
        launch_plan(str(tiny_map_dir), extrinsics="urdf")
    with pytest.raises(ConfigError, match="posenet_localizer needs posenet_model"):
        launch_plan(str(tiny_map_dir), nodes="posenet_localizer")


def test_launch_description_declares_the_documented_arguments(monkeypatch):
    pytest.importorskip("launch", reason="`launch` comes with a ROS installation, not with the PyPI wheels")
    pytest.importorskip("launch_ros", reason="`launch_ros` comes with a ROS installation")
    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    spec = importlib.util.spec_from_file_location("geoloc_launch", REPO / "launch" / "geoloc.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {arg.name: arg for arg in description.get_launch_arguments()}
    assert set(declared) == set(module.ARGUMENTS)
    documented = {"map_bundle", "posenet_model", "extrinsics", "namespace", "remappings", "use_sim_time"}
    assert documented <= set(declared)
