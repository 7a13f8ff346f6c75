"""The Docker images install with the tested constraint set of their Python (Docker does not run in CI).

Each image installs through tools/setup.sh, naming its set in GEOLOC_CONSTRAINTS; setup.sh refuses a set made
for another Python, and test/test_packaging.py checks that each set resolves from the index.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DISTRO_PYTHON = {"humble": "3.10", "jazzy": "3.12"}  # ROS 2 distro -> its Ubuntu's Python
IMAGES = {"Dockerfile.cpu": "cpu", "Dockerfile.cuda": "gpu", "Dockerfile.jetson": "gpu"}  # -> onnxruntime


def env_value(dockerfile: str, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", dockerfile)
    assert match, f"{name} is not set"
    return match.group(1)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_installs_with_the_constraint_set_of_its_python(image):
    path = REPO / "docker" / image
    text = path.read_text()
    distros = set(re.findall(r"/opt/ros/(\w+)/", text)) | set(re.findall(r"\bros-(humble|jazzy)-", text))
    assert len(distros) == 1, f"{image}: one ROS 2 distro expected, found {sorted(distros)}"
    (distro,) = distros
    python = DISTRO_PYTHON[distro]
    constraints = env_value(text, "GEOLOC_CONSTRAINTS")
    expected = f"requirements/constraints-py{python}.txt"
    assert constraints == expected, f"{image}: {distro} runs Python {python}, so {expected}"
    assert (REPO / constraints).is_file()
    assert env_value(text, "GEOLOC_ONNXRUNTIME") == IMAGES[image]
    assert env_value(text, "GEOLOC_EXTRAS") == "runtime"
    run_steps = [line for line in text.splitlines() if "tools/setup.sh" in line and line.startswith("RUN")]
    assert run_steps and all(f"/opt/ros/{distro}/" in line for line in run_steps), (
        f"{image}: the install step must be tools/setup.sh with ROS {distro} sourced"
    )
    assert "pip install" not in text, f"{image}: installs with pip outside tools/setup.sh (untested pins)"


def test_the_images_are_the_documented_ones():
    assert {p.name for p in (REPO / "docker").glob("Dockerfile*")} == set(IMAGES)


def test_setup_refuses_a_constraint_set_of_another_python(tmp_path):
    other = "3.10" if sys.version_info[:2] != (3, 10) else "3.12"
    env = {**os.environ, "GEOLOC_CONSTRAINTS": f"requirements/constraints-py{other}.txt"}
    env |= {"GEOLOC_VENV": str(tmp_path / "venv"), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "tools/setup.sh"], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1
    assert f"constraints-py{other}.txt" in result.stderr and "this is Python" in result.stderr
    assert not (tmp_path / "venv").exists()
