"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("GEOLOC_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The team's shared real-data folder (../shared); tests using it skip when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent (set GEOLOC_SHARED_DIR to point to it)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _ros_loopback_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """ROS tests: loopback-only discovery (a safety net under tools' network namespace) and a domain id
    of their own, so parallel test runs on one machine never see each other's topics."""
    if request.node.get_closest_marker("ros") is None:
        return
    from geoloc_ros.nodes.isolation import LOOPBACK_ENV

    for key, value in LOOPBACK_ENV.items():
        monkeypatch.setenv(key, value)
    if "ROS_DOMAIN_ID" not in os.environ:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


@pytest.fixture(scope="session")
def tiny_sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` scenario generated once per test session (panoramas/, drive/, scenario.yaml)."""
    from geoloc_ros.sim.generate import generate
    from geoloc_ros.sim.scenario import preset

    out = tmp_path_factory.mktemp("tiny_sim") / "tiny"
    generate(preset("tiny"), out, seed=1, workers=2)
    return out
