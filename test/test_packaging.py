"""package.xml, setup.py and the launch files agree (the layering is test/test_layering.py)."""

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_call() -> dict:
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    values = {}
    for kw in call.keywords:
        try:
            values[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            if isinstance(kw.value, ast.Name):
                values[kw.arg] = {"PACKAGE": "geoloc_ros"}.get(kw.value.id, kw.value.id)
    return values


def test_package_xml_and_setup_py_agree():
    xml = ET.parse(REPO / "package.xml").getroot()
    assert xml.get("format") == "3"
    setup = setup_call()
    assert xml.findtext("name") == setup["name"] == "geoloc_ros"
    assert xml.findtext("version") == setup["version"]
    import geoloc_ros

    assert geoloc_ros.__version__ == setup["version"]
    assert xml.find("export/build_type").text == "ament_python"
    exec_depends = {e.text for e in xml.findall("exec_depend")}
    for dep in (
        "rclpy",
        "sensor_msgs",
        "geometry_msgs",
        "nav_msgs",
        "std_msgs",
        "diagnostic_msgs",
        "visualization_msgs",
    ):
        assert dep in exec_depends
    assert xml.findtext("license") == setup["license"] == "Apache-2.0"
    assert (REPO / "resource" / "geoloc_ros").is_file()


def test_entry_points_resolve_and_launch_files_use_them():
    scripts = dict(line.split(" = ") for line in setup_call()["entry_points"]["console_scripts"])
    for name, target in scripts.items():
        module_name, func = target.split(":")
        module = importlib.util.find_spec(module_name)
        assert module is not None, f"entry point {name}: module {module_name} missing"
        source = Path(module.origin).read_text()
        assert re.search(rf"^def {func}\(", source, re.M), (
            f"entry point {name}: no function {func} in {module_name}"
        )
    node_names = {n for n in scripts if n != "geoloc"}
    assert node_names == {"camera_ingest", "bovw_localizer", "posenet_localizer", "pose_fusion"}
    launched: set[str] = set()
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        for call in ast.walk(ast.parse(launch_file.read_text())):
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Node"):
                continue
            kwargs = {kw.arg: kw.value for kw in call.keywords}
            package = kwargs.get("package")
            ours = (isinstance(package, ast.Name) and package.id == "PACKAGE") or (
                isinstance(package, ast.Constant) and package.value == "geoloc_ros"
            )
            if ours:
                launched.add(ast.literal_eval(kwargs["executable"]))
    assert launched == node_names, (
        f"the launch file starts {sorted(launched)}, setup.py declares {sorted(node_names)}"
    )
