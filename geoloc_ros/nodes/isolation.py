"""Keep ROS 2 traffic on loopback: the one place that sets discovery variables and network namespaces.

- :func:`enforce_loopback` sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (Iron and newer) and
  ``ROS_LOCALHOST_ONLY=1`` (Humble) in an environment mapping. The ROS processes that tests, CI and
  ``geoloc stack/replay`` start go through it (``force=False`` keeps a choice made on purpose; the demo
  runs offline). The node entry points (``ros2 run`` / ``ros2 launch``) do not: on a vehicle discovery
  is the environment's.
- ``python -m geoloc_ros.nodes.isolation -- CMD ...`` runs ``CMD`` with those variables inside a
  private network namespace whose only interface is ``lo`` (``unshare -n``, or ``unshare -rn``
  without root), falling back to the variables alone, with a warning, where no namespace can be made.
  The README's test command runs the whole test suite this way.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

LOOPBACK_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1"}
_INNER_FLAG = "GEOLOC_NETNS_INNER"


def enforce_loopback(environ: MutableMapping[str, str] | None = None, force: bool = True) -> None:
    """Restrict DDS discovery to this host. With ``force=False`` only unset variables are filled in."""
    env = os.environ if environ is None else environ
    for key, value in LOOPBACK_ENV.items():
        if force:
            env[key] = value
        else:
            env.setdefault(key, value)


def network_interfaces() -> list[str]:
    """Interfaces of this process's network namespace (/proc/net/dev follows the namespace; /sys may not)."""
    try:
        with open("/proc/net/dev", encoding="ascii") as fh:
            lines = fh.readlines()[2:]
    except OSError:
        return []
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def in_private_namespace() -> bool:
    """True when the only network interface is loopback (a private network namespace)."""
    return network_interfaces() == ["lo"]


def _unshare_prefix() -> list[str] | None:
    """The unshare invocation that works here (root: -n; unprivileged: -rn), or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for flags in (["-n"], ["-rn"]):
        probe = subprocess.run([unshare, *flags, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [unshare, *flags]
    return None


def _bring_up_loopback() -> bool:
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None)
    if ip is None:
        return False
    return subprocess.run([ip, "link", "set", "lo", "up"], capture_output=True, check=False).returncode == 0


def run_isolated(command: list[str]) -> int:
    """Exec ``command`` with loopback-only ROS discovery, in a private network namespace if possible."""
    if not command:
        raise SystemExit("usage: python -m geoloc_ros.nodes.isolation -- COMMAND [ARGS...]")
    enforce_loopback()
    if os.environ.get(_INNER_FLAG) == "1":
        if not _bring_up_loopback():
            print("geoloc isolation: could not bring up 'lo' in the network namespace", file=sys.stderr)
            return 1
        os.environ.pop(_INNER_FLAG)
        os.execvp(command[0], command)
    if in_private_namespace():
        os.execvp(command[0], command)
    prefix = _unshare_prefix()
    if prefix is None:
        print(
            "geoloc isolation: cannot create a private network namespace (no unshare, or neither root nor "
            "user namespaces); ROS discovery is restricted by ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST alone",
            file=sys.stderr,
        )
        os.execvp(command[0], command)
    os.environ[_INNER_FLAG] = "1"
    os.execvp(prefix[0], [*prefix, "--", sys.executable, "-m", "geoloc_ros.nodes.isolation", "--", *command])
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    return run_isolated(args)


if __name__ == "__main__":
    sys.exit(main())
