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


# Where command lines are written down for people: the docs, and the usage lines of scripts and configs.
COMMAND_FILES = ("*.md", "docs/*.md", "bench/*.py", "config/**/*.yaml", "launch/*.py", "docker/*", "tools/*")
_GEOLOC = re.compile(r"(?<![\w/.-])geoloc((?:\s+-[vq])*)\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?")
_BENCH = re.compile(r"\bbench/(\w+)\.py\b")
_FLAG = re.compile(r"(?<![\w/.=-])--[a-z0-9][a-z0-9-]*")


def command_snippets(path: Path) -> list[str]:
    """The pieces of ``path`` a command line can be in: a fenced block's lines (comments off) and
    inline code spans of Markdown (joined across line breaks); lines of other files. A line ending
    in a backslash goes on."""
    text = path.read_text(errors="replace")
    if path.suffix != ".md":
        return re.sub(r"\\\\?\n", " ", text).splitlines()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    lines = [line.split("#", 1)[0] for block in blocks for line in re.sub(r"\\\n", " ", block).splitlines()]
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return lines + [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]


def _geoloc_options() -> dict[str, set[str]]:
    """Every ``geoloc`` command ("map refine") with its visible option flags."""
    import click

    from geoloc_ros.cli.main import cli

    ctx = click.Context(cli)
    out: dict[str, set[str]] = {}

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])  # type: ignore[arg-type]
        else:
            visible = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
            out[" ".join(path)] = {f for p in visible for f in p.opts + p.secondary_opts} | {"--help"}

    walk(cli, [])
    return out


def _bench_options() -> dict[str, set[str]]:
    """Every bench script with the option flags its argparse parser declares."""
    import ast

    out = {}
    for script in (REPO / "bench").glob("*.py"):
        flags = {"--help"}
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                named = {
                    a.value
                    for a in node.args
                    if isinstance(a, ast.Constant) and str(a.value).startswith("--")
                }
                negated = any(getattr(k.value, "attr", "") == "BooleanOptionalAction" for k in node.keywords)
                flags |= named | ({"--no-" + f[2:] for f in named} if negated else set())
        out[script.stem] = flags
    return out


def unknown_options(snippet: str, geoloc: dict[str, set[str]], bench: dict[str, set[str]]) -> list[str]:
    """The ``--flags`` in a command line of ``snippet`` that its command (geoloc or a bench script)
    does not have."""
    starts = [(m.start(), m.end(), _geoloc_command(m, geoloc)) for m in _GEOLOC.finditer(snippet)]
    starts += [
        (m.start(), m.end(), ("bench/" + m.group(1), bench.get(m.group(1)))) for m in _BENCH.finditer(snippet)
    ]
    starts.sort()
    bad = []
    for i, (_, end, (name, flags)) in enumerate(starts):
        if flags is None:
            if name.split()[1:2] and f"{name.split()[1]} " in " ".join(geoloc) + " ":  # a group
                bad.append(f"{name}: no such command")
            continue
        rest = snippet[end : starts[i + 1][0] if i + 1 < len(starts) else len(snippet)]
        bad += [f"{name} {flag}" for flag in _FLAG.findall(rest) if flag not in flags]
    return bad


def _geoloc_command(match: re.Match[str], geoloc: dict[str, set[str]]) -> tuple[str, set[str] | None]:
    first, second = match.group(2), match.group(3)
    for name in (f"{first} {second}", first):
        if name in geoloc:
            return f"geoloc {name}", geoloc[name]
    return f"geoloc {first} {second or ''}".strip(), None


def test_unknown_options_sees_a_renamed_flag():
    geoloc = {"map refine": {"--out", "--bag"}, "localize": {"--bag", "--map"}}
    bench = {"bench_x": {"--bag"}}
    text = "geoloc -q map refine M --out O --drive D; geoloc localize --map M; bench/bench_x.py --model M"
    assert unknown_options(text, geoloc, bench) == ["geoloc map refine --drive", "bench/bench_x --model"]
    assert unknown_options("geoloc COMMAND --help", geoloc, bench) == []
    assert unknown_options("geoloc map refines --out O", geoloc, bench) == [
        "geoloc map refines: no such command"
    ]


def test_every_command_line_in_the_docs_uses_options_that_exist():
    """A renamed or removed option is renamed in every command line written down for people."""
    geoloc, bench = _geoloc_options(), _bench_options()
    files = sorted({p for pattern in COMMAND_FILES for p in REPO.glob(pattern) if p.is_file()})
    checked, bad = 0, []
    for path in files:
        for snippet in command_snippets(path):
            if "geoloc " in snippet or "bench/" in snippet:
                checked += 1
                bad += [f"{path.relative_to(REPO)}: {b}" for b in unknown_options(snippet, geoloc, bench)]
    assert checked > 100
    assert not bad, "command lines with options their command does not have:\n" + "\n".join(sorted(set(bad)))
