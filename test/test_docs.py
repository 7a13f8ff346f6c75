"""docs/architecture.md names only repository paths that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Inline-code spans that look like repository paths: a known top-level folder, or a package path
# written from inside geoloc_ros (``gis/depth/``, ``nodes/isolation.py``).
TOP_LEVEL = ("geoloc_ros/", "test/", "tools/", "bench/", "docs/", "config/", "launch/", "docker/")


def named_paths(text: str) -> set[str]:
    paths = set()
    for raw in re.findall(r"`([^`\s]+)`", text):
        span = raw.rstrip(".,:;")
        if span.startswith(TOP_LEVEL):
            paths.add(span)
        elif re.fullmatch(r"[a-z_]+/([a-z_]+/)*([a-z_]+\.py)?", span) and not span.startswith("share/"):
            paths.add(f"geoloc_ros/{span}")
    return paths


def tree_paths(text: str) -> set[str]:
    """The entries of the package tree drawn under a ``geoloc_ros/`` line (``  gis/  ...``)."""
    block = text.split("\ngeoloc_ros/\n", 1)[1].split("```", 1)[0]
    return {f"geoloc_ros/{m}" for m in re.findall(r"^  (\w+/|\w+\.py) ", block, re.M)}


def test_named_paths_cover_both_spellings():
    text = "see `test/test_layering.py`, `gis/depth/`, `nodes/isolation.py` and `numpy.float32`"
    assert named_paths(text) == {
        "test/test_layering.py",
        "geoloc_ros/gis/depth/",
        "geoloc_ros/nodes/isolation.py",
    }


def test_every_path_in_architecture_md_exists():
    text = (REPO / "docs" / "architecture.md").read_text()
    paths = named_paths(text) | tree_paths(text)
    # the check sees the paths the map names, inline and in the package tree
    assert {"geoloc_ros/nodes/isolation.py", "geoloc_ros/pipelines/", "geoloc_ros/config.py"} <= paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
