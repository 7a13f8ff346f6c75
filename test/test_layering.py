"""The package-level layering of geoloc_ros (docs/architecture.md): an acyclic import graph, an
evaluation that only judges the trajectories it is given, and ROS only in ``nodes``.

The graph is read from the sources with ``ast`` (every import, lazy ones inside functions included),
so a cycle cannot hide behind a function-level import.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "geoloc_ros"
ROS_MODULES = re.compile(r"^(rclpy|rosidl_runtime_py|launch|launch_ros|tf2_ros|cv_bridge|\w+_msgs)(\.|$)")
ROS_PACKAGE = "nodes"
# Packages evaluation must not import: it judges trajectories, it does not produce them.
PRODUCERS = {"localize", "posenet", "fusion", "mapping", "pipelines"}


def _imported_modules(path: Path, repo: Path = REPO) -> list[tuple[int, str]]:
    """Absolute names of every module ``path`` imports (relative imports resolved), with line numbers."""
    rel = path.relative_to(repo).with_suffix("").parts
    package = rel if path.name == "__init__.py" else rel[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                out.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            else:
                out.append((node.lineno, node.module or ""))
    return out


def _top_package(path: Path, root: Path = PACKAGE) -> str:
    """``geoloc_ros/a/b.py`` -> ``a``; a top-level module ``geoloc_ros/config.py`` -> ``config``."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def package_graph(root: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """``graph[a][b]``: the ``file:line`` places where package ``a`` imports package ``b`` (a != b)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*.py")):
        source = _top_package(path, root)
        if source == "__init__":
            continue
        graph[source]  # every package is a node, even without edges
        for line, module in _imported_modules(path, root.parent):
            parts = module.split(".")
            if parts[0] != "geoloc_ros" or len(parts) < 2:
                continue
            target = parts[1]
            if target != source:
                graph[source][target].append(f"{path.relative_to(root.parent)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for succ in sorted(graph.get(node, {})):
            if state.get(succ) == 1:
                return [*stack[stack.index(succ) :], succ]
            if succ not in state and (cycle := visit(succ)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_cycle_finder_sees_a_cycle_and_a_dag():
    dag = {"a": {"b": ["x"]}, "b": {"c": ["x"]}, "c": {}}
    assert find_cycle(dag) is None
    assert find_cycle({**dag, "c": {"a": ["x"]}}) == ["a", "b", "c", "a"]


def test_graph_reads_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / "geoloc_ros"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "a" / "x.py").write_text("def f():\n    from ..b import y\n")
    (pkg / "b" / "y.py").write_text("import geoloc_ros.a.x\n")
    graph = package_graph(pkg)
    assert set(graph["a"]) == {"b"} and set(graph["b"]) == {"a"}
    assert find_cycle(graph) == ["a", "b", "a"]


def test_package_import_graph_has_no_cycle():
    graph = package_graph()
    cycle = find_cycle(graph)
    if cycle is not None:
        where = [f"{a} -> {b}: {graph[a][b][0]}" for a, b in itertools.pairwise(cycle)]
        raise AssertionError("package import cycle:\n" + "\n".join(where))


def test_evaluation_judges_given_trajectories_only():
    graph = package_graph()
    offenders = {p: graph["evaluation"][p] for p in PRODUCERS if p in graph["evaluation"]}
    assert not offenders, f"evaluation imports the packages that produce estimates: {offenders}"


def test_only_nodes_imports_ros():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if _top_package(path) == ROS_PACKAGE:
            continue
        offenders += [
            f"{path.relative_to(REPO)}:{line} imports {module}"
            for line, module in _imported_modules(path)
            if ROS_MODULES.match(module)
        ]
    assert not offenders, f"only geoloc_ros/{ROS_PACKAGE} may import ROS:\n" + "\n".join(offenders)


def documented_layers(doc: Path = REPO / "docs" / "architecture.md") -> dict[str, int]:
    """``package -> layer`` from the ``layer N  pkg pkg ...`` lines of docs/architecture.md."""
    layers = {}
    for match in re.finditer(r"^layer (\d+) +(.+)$", doc.read_text(), re.M):
        for package in match.group(2).split():
            layers[package] = int(match.group(1))
    return layers


def test_imports_follow_the_documented_layers():
    layers = documented_layers()
    graph = package_graph()
    assert set(graph) <= set(layers), (
        f"packages missing from docs/architecture.md: {set(graph) - set(layers)}"
    )
    upward = [
        f"{a} (layer {layers[a]}) imports {b} (layer {layers[b]}): {places[0]}"
        for a, targets in graph.items()
        for b, places in targets.items()
        if layers[b] >= layers[a]
    ]
    assert not upward, "imports against the documented layering:\n" + "\n".join(upward)
