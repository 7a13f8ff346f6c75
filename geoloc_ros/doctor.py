"""``geoloc doctor``: check an installation and say what is missing.

Each check imports or reads what the stack needs (nothing is started: no rclpy.init, no DDS
traffic) and gives a status: ``ok``, ``warning`` (works, with a limitation worth knowing) or
``missing`` (something geoloc needs is absent or misconfigured), with a hint how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OK, WARNING, MISSING = "ok", "warning", "missing"

# Python libraries of the ROS-free core (module -> pip distribution).
CORE_MODULES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "cv2": "opencv-python-headless",
    "faiss": "faiss-cpu",
    "rosbags": "rosbags",
    "pydantic": "pydantic",
    "matplotlib": "matplotlib",
}
# The message packages the nodes use.
MESSAGE_PACKAGES = (
    "geometry_msgs",
    "sensor_msgs",
    "nav_msgs",
    "rosgraph_msgs",
    "diagnostic_msgs",
    "visualization_msgs",
)
DISCOVERY_RANGES = ("LOCALHOST", "SUBNET", "OFF", "SYSTEM_DEFAULT")
ROS_HINT = "source /opt/ros/<distro>/setup.bash, or install the ROS 2 Python wheels (make setup)"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""


def _import(name: str) -> tuple[Any, str]:
    """(module, "") or (None, why it cannot be imported)."""
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # an installation can break an import in any way
        return None, f"{type(exc).__name__}: {exc}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"


def check_core() -> Check:
    failed = {name: why for name in CORE_MODULES if (why := _import(name)[1])}
    if failed:
        names = ", ".join(f"{name} ({why})" for name, why in failed.items())
        packages = " ".join(CORE_MODULES[name] for name in failed)
        return Check("core libraries", MISSING, names, f"pip install {packages} (or make setup)")
    return Check("core libraries", OK, ", ".join(CORE_MODULES))


def check_rclpy(environ: Mapping[str, str]) -> Check:
    module, why = _import("rclpy")
    if module is None:
        return Check("rclpy", MISSING, why, ROS_HINT + "; the ROS-free commands work without it")
    distro = environ.get("ROS_DISTRO")
    where = f"ROS_DISTRO {distro}" if distro else "PyPI wheels (no ROS_DISTRO)"
    return Check("rclpy", OK, f"{_version('rclpy')}, {where}")


def check_messages() -> Check:
    failed = {pkg: why for pkg in MESSAGE_PACKAGES if (why := _import(f"{pkg}.msg")[1])}
    if failed:
        detail = "; ".join(f"{pkg}: {why}" for pkg, why in failed.items())
        return Check("message packages", MISSING, detail, ROS_HINT)
    return Check("message packages", OK, ", ".join(MESSAGE_PACKAGES))


def check_onnxruntime() -> Check:
    module, why = _import("onnxruntime")
    if module is None:
        return Check("onnxruntime", MISSING, why, "pip install geoloc_ros[cpu] (or [gpu]) for PoseNet")
    providers = module.get_available_providers()
    return Check("onnxruntime", OK, f"{module.__version__}, providers: {', '.join(providers)}")


def check_gpu(environ: Mapping[str, str]) -> Check:
    module, _ = _import("onnxruntime")
    providers = module.get_available_providers() if module is not None else []
    gpu_providers = [p for p in providers if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    driver = shutil.which("nvidia-smi") is not None or Path("/dev/nvidiactl").exists()
    if gpu_providers and driver:
        return Check("GPU", OK, f"NVIDIA driver present; onnxruntime can use {', '.join(gpu_providers)}")
    if driver:
        return Check(
            "GPU", WARNING, "an NVIDIA driver but a CPU-only onnxruntime", "pip install geoloc_ros[gpu]"
        )
    return Check("GPU", WARNING, "none found: PoseNet runs on the CPU (slower, same results)")


def check_ament(environ: Mapping[str, str], share_file: Callable[[str], Path | None]) -> Check:
    config = share_file("config/geoloc.yaml")
    prefix = environ.get("AMENT_PREFIX_PATH", "")
    if config is None:
        return Check(
            "ament prefix",
            MISSING,
            "config/geoloc.yaml is neither in the source checkout nor in an install's share/geoloc_ros",
            "reinstall geoloc_ros (pip install -e . or colcon build), or pass --config to geoloc stack",
        )
    hint = (
        "ros2 launch/run need geoloc_ros in an ament prefix: source .venv/geoloc_env.sh (developer "
        "install, after ROS' setup.bash) or a colcon install's setup.bash; geoloc stack does not"
    )
    if not prefix:
        return Check("ament prefix", WARNING, f"AMENT_PREFIX_PATH unset (parameter file {config})", hint)
    marker = Path("share", "ament_index", "resource_index", "packages", "geoloc_ros")
    if not any((Path(p) / marker).exists() for p in prefix.split(os.pathsep) if p):
        return Check("ament prefix", WARNING, f"geoloc_ros is in none of AMENT_PREFIX_PATH={prefix}", hint)
    return Check("ament prefix", OK, f"{prefix} (parameter file {config})")


def check_dds(environ: Mapping[str, str]) -> Check:
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    files = {
        key: environ[key]
        for key in ("CYCLONEDDS_URI", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
        if environ.get(key)
    }
    broken = {
        key: value
        for key, value in files.items()
        if not value.lstrip().startswith("<")  # CYCLONEDDS_URI may hold inline XML
        and not all(Path(p.removeprefix("file://")).is_file() for p in value.split(","))
    }
    detail = f"RMW_IMPLEMENTATION={rmw or '(distribution default)'}"
    detail += "".join(f", {k}={v}" for k, v in files.items())
    if broken:
        missing = ", ".join(f"{k} -> {v}" for k, v in broken.items())
        return Check("DDS configuration", MISSING, f"{detail}; file not found: {missing}", "fix or unset it")
    return Check("DDS configuration", OK, detail)


def check_discovery(environ: Mapping[str, str]) -> Check:
    value = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    localhost_only = environ.get("ROS_LOCALHOST_ONLY", "")
    domain = environ.get("ROS_DOMAIN_ID", "0")
    where = f"ROS_DOMAIN_ID {domain}"
    if value and value.upper() not in DISCOVERY_RANGES:
        return Check(
            "discovery range",
            MISSING,
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={value} is not one of {', '.join(DISCOVERY_RANGES)}",
            "set LOCALHOST (this host only) or SUBNET",
        )
    if value.upper() == "LOCALHOST" or (not value and localhost_only == "1"):
        return Check("discovery range", OK, f"this host only ({where})")
    if not value:
        return Check(
            "discovery range",
            WARNING,
            f"unset ({where}): geoloc stack/replay keep to this host; ros2 launch uses the ROS default",
            "export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, or SUBNET to reach other machines",
        )
    return Check("discovery range", WARNING, f"{value.upper()} ({where}): other hosts can see these topics")


def run_checks(environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order they are printed."""
    from geoloc_ros.resources import share_file

    env = os.environ if environ is None else environ
    return [
        Check("python", OK, sys.version.split()[0]),
        check_core(),
        check_rclpy(env),
        check_messages(),
        check_onnxruntime(),
        check_gpu(env),
        check_ament(env, share_file),
        check_dds(env),
        check_discovery(env),
    ]


def report_text(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:<8} {check.name:<{width}}  {check.detail}")
        if check.hint and check.status != OK:
            lines.append(f"{'':<8} {'':<{width}}  -> {check.hint}")
    missing = [c.name for c in checks if c.status == MISSING]
    lines.append(f"\nmissing: {', '.join(missing)}" if missing else "\neverything geoloc needs is there")
    return "\n".join(lines)


def report_dict(checks: list[Check]) -> dict[str, Any]:
    return {
        "ok": all(c.status != MISSING for c in checks),
        "missing": [c.name for c in checks if c.status == MISSING],
        "checks": [asdict(c) for c in checks],
    }
