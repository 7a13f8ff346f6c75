"""package.xml, setup.py and the launch files agree (the layering is test/test_layering.py)."""

import ast
import importlib
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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
        "lifecycle_msgs",
        "std_srvs",
        "tf2_ros",
        "ament_index_python",
        "launch",
        "launch_ros",
        "ros2bag",
        "rosbag2_storage_default_plugins",
        "rviz2",
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
    # The launch file starts the nodes launch_plan chooses, with executable = node name.
    from geoloc_ros.nodes.stack import NODE_CLASSES, STACK_ORDER

    assert set(STACK_ORDER) == set(NODE_CLASSES) == node_names
    source = (REPO / "launch" / "geoloc.launch.py").read_text()
    assert "launch_plan(" in source and "executable=node.name" in source


# ------------------------------------------------------------------------------------------ constraint sets
PYTHONS = ("3.10", "3.11", "3.12")
# glibc of the oldest OS each Python ships on: Ubuntu 22.04 (Humble, JetPack 6) 2.35,
# Ubuntu 24.04 (Jazzy) 2.39.
GLIBC_MINOR = {"3.10": 35, "3.11": 35, "3.12": 39}
ARCHES = ("x86_64", "aarch64")
# Pins without a wheel on the index: the ROS 2 wheels' rosidl tools need empy (source distribution only).
SDIST_ONLY = {"empy"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraint_pins(python: str) -> dict[str, str]:
    """``{normalized name: 'Name==version'}`` of ``requirements/constraints-py<python>.txt``."""
    pins = {}
    for raw in (REPO / "requirements" / f"constraints-py{python}.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints-py{python}.txt: {line!r} is not pinned with =="
            pins[_norm(name)] = line
    return pins


def runtime_requirements(python: str, arch: str) -> list[str]:
    """The runtime install (install_requires + the cpu extra: no torch, no dev tools) on ``arch``, markers
    evaluated for that target (pip evaluates them for the interpreter that runs it, not --platform's)."""
    from packaging.requirements import Requirement

    setup = setup_call()
    env = {"platform_machine": arch, "python_version": python, "python_full_version": f"{python}.0"}
    env |= {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    names = []
    for text in [*setup["install_requires"], *setup["extras_require"]["cpu"]]:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(env):
            names.append(str(Requirement(str(requirement).split(";")[0])))
    return names


def platform_args(python: str, arch: str) -> list[str]:
    tags = [f"manylinux2014_{arch}"] + [f"manylinux_2_{m}_{arch}" for m in range(17, GLIBC_MINOR[python] + 1)]
    return [arg for tag in tags for arg in ("--platform", tag)]


def test_one_constraint_set_per_supported_python_chosen_by_setup():
    setup_sh = (REPO / "tools" / "setup.sh").read_text()
    assert 'CONSTRAINTS="requirements/constraints-py${py_version}.txt"' in setup_sh
    low, high = re.fullmatch(r">=(3\.\d+),<3\.(\d+)", setup_call()["python_requires"]).groups()
    assert tuple(f"3.{m}" for m in range(int(low.split(".")[1]), int(high))) == PYTHONS
    for python in PYTHONS:
        pins = constraint_pins(python)
        for arch in ARCHES:
            for requirement in runtime_requirements(python, arch):
                name = _norm(re.split(r"[<>=\[;! ]", requirement, maxsplit=1)[0])
                assert name in pins, f"constraints-py{python}.txt does not pin {name}"
    # poselib has no aarch64 wheel: optional there (OpenCV USAC replaces it).
    assert not any(r.startswith("poselib") for r in runtime_requirements("3.10", "aarch64"))
    assert any(r.startswith("poselib") for r in runtime_requirements("3.10", "x86_64"))


def _pip(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


def _resolution_checks(tmp_path: Path) -> list[tuple[str, list[str]]]:
    """One pip call per check: the runtime install with its dependencies for each Python and arch, and
    every wheel pin of each set (train, dev, ROS wheels) without dependencies on x86_64."""
    checks = []
    for python in PYTHONS:
        constraints = str(REPO / "requirements" / f"constraints-py{python}.txt")
        common = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
        common += ["--python-version", python]
        for arch in ARCHES:
            target = str(tmp_path / f"{python}-{arch}")
            args = [*common, *platform_args(python, arch), "--target", target, "-c", constraints]
            checks.append((f"runtime py{python} {arch}", [*args, *runtime_requirements(python, arch)]))
        pins = [pin for name, pin in constraint_pins(python).items() if name not in SDIST_ONLY]
        target = str(tmp_path / f"{python}-all")
        args = [*common, *platform_args(python, "x86_64"), "--target", target, "--no-deps"]
        checks.append((f"all pins py{python} x86_64", [*args, *pins]))
    return checks


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=10).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.network
def test_every_constraint_set_resolves_from_the_index(tmp_path):
    """Needs PyPI: `make test` (CI) runs it outside the private network namespace. Each check is a single
    pip call, all in parallel."""
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable from here (make test runs this outside the network namespace)")
    checks = _resolution_checks(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda check: _pip(*check[1]), checks))
    failures = [
        f"{label}: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}"
        for (label, _), result in zip(checks, results, strict=True)
        if result.returncode != 0 or "Would install" not in result.stdout
    ]
    assert not failures, "constraint sets that do not resolve:\n" + "\n".join(failures)
    for python in PYTHONS:  # source-only pins: the pinned version exists on the index
        for name in SDIST_ONLY & constraint_pins(python).keys():
            version = constraint_pins(python)[name].split("==")[1]
            listed = _pip("index", "versions", name, "--python-version", python)
            assert version in listed.stdout, f"constraints-py{python}.txt: {name}=={version} not on the index"


# ------------------------------------------------------------------------------------------ ament prefix
def test_the_developer_install_is_an_ament_prefix(monkeypatch):
    """tools/setup.sh makes the venv an ament prefix: `ros2 launch geoloc_ros geoloc.launch.py` finds the
    package share (launch, config) the way ROS does, through the ament index."""
    prefix = Path(sys.prefix)
    if not (prefix / ".geoloc-setup-stamp").is_file():
        pytest.skip(f"{prefix} was not made by tools/setup.sh")
    packages = pytest.importorskip("ament_index_python.packages", reason="ament_index_python not installed")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))  # what .venv/geoloc_env.sh exports
    share = Path(packages.get_package_share_directory("geoloc_ros"))
    assert share == prefix / "share" / "geoloc_ros"
    for name in ("package.xml", "launch/geoloc.launch.py", "config/geoloc.yaml", "config/geoloc.rviz"):
        assert (share / name).is_file(), f"{share / name} missing from the ament prefix"
    assert ET.parse(share / "package.xml").getroot().findtext("name") == "geoloc_ros"
    for executable in ("camera_ingest", "bovw_localizer", "posenet_localizer", "pose_fusion"):
        assert (prefix / "lib" / "geoloc_ros" / executable).exists(), f"lib/geoloc_ros/{executable} missing"
