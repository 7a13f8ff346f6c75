"""Renamed options of the bench scripts: the old spelling is still taken, with a warning naming the
new one (the geoloc CLI does the same with ``geoloc_ros.cli.common.renamed_option``).

The scripts name a concept as ``geoloc`` does: ``--bag`` a drive (a rosbag2 folder or a drive folder),
``--posenet`` an exported PoseNet model, ``--json`` (a flag) printing the figures as JSON; ``--json-out
FILE`` writes them to a file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

# old spelling -> new one, for every bench script (a script only sees the ones it declares)
RENAMED = {
    "--drive": "--bag",
    "--model": "--posenet",
    "--model-fp16": "--posenet-fp16",
    "--posenet-model": "--posenet",
    "--json": "--json-out",  # a file to write the figures to; --json alone prints them (geoloc, DDS bench)
}


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, renamed: Mapping[str, str] = RENAMED
) -> argparse.Namespace:
    """``parser.parse_args`` with the old spellings in ``renamed`` (``--old V`` or ``--old=V``) taken
    as the new ones the parser declares."""
    declared = set(parser._option_string_actions)
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        flag, eq, value = arg.partition("=")
        new = renamed.get(flag)
        if new is not None and flag not in declared and new in declared:
            logger.warning("%s is deprecated (renamed %s): it will go in a later release", flag, new)
            args[i] = new + eq + value
    return parser.parse_args(args)
