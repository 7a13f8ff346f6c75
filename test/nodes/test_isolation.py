import os
import subprocess
import sys

from geoloc_ros.nodes.isolation import LOOPBACK_ENV, enforce_loopback, in_private_namespace


def test_enforce_loopback_force_and_default():
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    enforce_loopback(env, force=False)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"  # an integrator's explicit choice is kept
    assert env["ROS_LOCALHOST_ONLY"] == "1"
    enforce_loopback(env)
    assert env == LOOPBACK_ENV


def test_isolated_command_sees_only_loopback():
    script = (
        "import os, sys\n"
        "from geoloc_ros.nodes.isolation import in_private_namespace\n"
        "env = os.environ\n"
        "print(env['ROS_AUTOMATIC_DISCOVERY_RANGE'], env['ROS_LOCALHOST_ONLY'], in_private_namespace())\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "geoloc_ros.nodes.isolation", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in LOOPBACK_ENV},
    )
    words = out.stdout.split()
    assert words[:2] == ["LOCALHOST", "1"]
    # Where namespaces can be made (root or user namespaces, as on CI) the command runs inside one.
    can_unshare = any(
        subprocess.run(["unshare", flag, "true"], capture_output=True, check=False).returncode == 0
        for flag in ("-n", "-rn")
    )
    if can_unshare or in_private_namespace():
        assert words[2] == "True", out.stderr
    else:
        assert "cannot create a private network namespace" in out.stderr
