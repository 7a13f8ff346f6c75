"""docs/architecture.md names only repository paths that exist; the docs name only geoloc_ros modules and
attributes that exist."""

from __future__ import annotations

import importlib
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


def resolves(dotted: str) -> bool:
    """Whether ``geoloc_ros.a.b.C.d`` names a module, or an attribute (or a pydantic field) of one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return attr in getattr(obj, "model_fields", {})
            obj = getattr(obj, attr)
        return True
    return False


def test_resolves_sees_a_wrong_name():
    assert resolves("geoloc_ros.io.tum.read_tum") and resolves("geoloc_ros.fusion.FusionConfig.history_s")
    assert not resolves("geoloc_ros.io.tum.read_tumm") and not resolves("geoloc_ros.nosuch.thing")


def test_every_geoloc_ros_name_in_the_docs_exists():
    docs = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
    named = {
        (doc.name, span.rstrip(".,:;"))
        for doc in docs
        for span in re.findall(r'(?<!["\w])(geoloc_ros\.[\w.]+)', doc.read_text())  # not "a value"
    }
    assert len(named) > 30
    missing = sorted((doc, name) for doc, name in named if not resolves(name))
    assert not missing, f"the docs name modules or attributes that do not exist: {missing}"
