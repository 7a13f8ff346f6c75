from __future__ import annotations

import sys
from pathlib import Path

import pytest

from geoloc_ros.doctor import (
    MISSING,
    OK,
    WARNING,
    check_dds,
    check_discovery,
    report_dict,
    report_text,
    run_checks,
)


def _by_name(environ: dict[str, str] | None = None) -> dict:
    return {c.name: c for c in run_checks({} if environ is None else environ)}


def test_the_development_install_passes() -> None:
    checks = run_checks()
    assert [c.name for c in checks if c.status == MISSING] == []
    names = {c.name: c.status for c in checks}
    assert names["rclpy"] == names["message packages"] == names["onnxruntime"] == OK
    assert "CPUExecutionProvider" in _by_name()["onnxruntime"].detail
    assert report_dict(checks)["ok"] is True
    assert report_text(checks).endswith("everything geoloc needs is there")


@pytest.mark.parametrize(
    ("hidden", "check"),
    [
        ("onnxruntime", "onnxruntime"),
        ("rclpy", "rclpy"),
        ("nav_msgs", "message packages"),
        ("faiss", "core libraries"),
    ],
)
def test_a_hidden_dependency_is_named(monkeypatch: pytest.MonkeyPatch, hidden: str, check: str) -> None:
    for name in [m for m in sys.modules if m == hidden or m.startswith(hidden + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, hidden, None)  # import now fails, as on an install without it
    checks = run_checks({})
    result = {c.name: c for c in checks}[check]
    assert result.status == MISSING and hidden in result.detail and result.hint
    document = report_dict(checks)
    assert document["ok"] is False and document["missing"] == [check]
    assert report_text(checks).splitlines()[-1] == f"missing: {check}"


def test_discovery_range() -> None:
    assert check_discovery({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}).status == OK
    assert check_discovery({"ROS_LOCALHOST_ONLY": "1"}).status == OK
    assert check_discovery({}).status == WARNING
    subnet = check_discovery({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": "7"})
    assert subnet.status == WARNING and "ROS_DOMAIN_ID 7" in subnet.detail
    assert check_discovery({"ROS_AUTOMATIC_DISCOVERY_RANGE": "lan"}).status == MISSING


def test_dds_configuration_files_must_exist(tmp_path: Path) -> None:
    profile = tmp_path / "cyclone.xml"
    profile.write_text("<CycloneDDS/>")
    assert (
        check_dds({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp", "CYCLONEDDS_URI": f"file://{profile}"}).status
        == OK
    )
    assert check_dds({"CYCLONEDDS_URI": "<CycloneDDS><Domain/></CycloneDDS>"}).status == OK
    broken = check_dds({"FASTRTPS_DEFAULT_PROFILES_FILE": str(tmp_path / "none.xml")})
    assert broken.status == MISSING and "none.xml" in broken.detail


def test_ament_prefix_and_parameter_file(tmp_path: Path) -> None:
    from geoloc_ros.doctor import check_ament

    assert check_ament({}, lambda _: None).status == MISSING
    assert check_ament({}, lambda _: tmp_path).status == WARNING
    # a sourced ROS without geoloc_ros' prefix: ros2 launch geoloc_ros would not find the package
    assert check_ament({"AMENT_PREFIX_PATH": str(tmp_path / "ros")}, lambda _: tmp_path).status == WARNING
    prefix = tmp_path / "venv"
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / "geoloc_ros"
    marker.parent.mkdir(parents=True)
    marker.touch()
    both = f"{prefix}:{tmp_path / 'ros'}"
    assert check_ament({"AMENT_PREFIX_PATH": both}, lambda _: tmp_path).status == OK
