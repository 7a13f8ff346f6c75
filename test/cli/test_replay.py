"""``geoloc replay`` as its own process: every message of the chosen topic is published, then it exits."""

import subprocess
import sys

import pytest

from geoloc_ros.io.bag import bag_info

pytestmark = pytest.mark.ros


def test_replay_cli_publishes_every_message_of_a_topic_and_exits(tiny_sim_dir):
    bag = tiny_sim_dir / "drive" / "bag"
    expected = bag_info(bag).counts["/rtk/fix"]
    command = [sys.executable, "-m", "geoloc_ros.cli.main", "replay", "--bag", str(bag)]
    result = subprocess.run(
        [*command, "--rate", "0", "--no-clock", "--topic", "/rtk/fix"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"replayed {expected} messages" in result.stdout
