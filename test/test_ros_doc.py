"""docs/ros.md is true: every parameter, service, topic, launch argument and command it names exists,
and its QoS table is what the nodes create."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "ros.md").read_text()
# The robot_localization example configures an ekf_node, not ours: its block is not checked.
PROSE = re.sub(r"```yaml.*?```", "", DOC, flags=re.S)
EXTERNAL_TOPICS = {"/tf", "/tf_static"}  # tf2's


def table_rows(header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def ticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def test_every_parameter_named_is_declared_by_its_nodes(node_parameters):
    declared = node_parameters
    rows = table_rows("| node | parameter |")
    assert len(rows) >= 10
    for nodes, parameters, _ in rows:
        for node in ticked(nodes):
            for parameter in ticked(parameters):
                assert parameter in declared[node], f"docs/ros.md: {node} has no parameter {parameter}"
    for node, parameter in re.findall(r"ros2 param describe /(\w+)\s+([\w.]+)", DOC):
        assert parameter in declared[node], f"docs/ros.md: {node} has no parameter {parameter}"
    # The ones marked "run time" are exactly the nodes' dynamic parameters.
    from geoloc_ros.nodes import camera_ingest, pose_fusion
    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode

    dynamic = {
        "camera_ingest": set(camera_ingest.DYNAMIC_PARAMETERS),
        "bovw_localizer": set(BovwLocalizerNode.dynamic_parameters),
        "pose_fusion": set(pose_fusion.DYNAMIC_PARAMETERS),
    }
    documented = {node: set() for node in dynamic}
    for nodes, parameters, what in rows:
        if "*run time*" in what:
            for node in ticked(nodes):
                documented[node] |= set(ticked(parameters))
    assert documented == dynamic


def test_every_service_named_is_created_by_its_node():
    from geoloc_ros.nodes.stack import NODE_CLASSES

    services = re.findall(r"`/(\w+)/(\w+)`", table_rows("| service |").__repr__())
    assert services
    for node, service in services:
        module = NODE_CLASSES[node].split(":")[0]
        source = (REPO / (module.replace(".", "/") + ".py")).read_text()
        assert f'create_service(Trigger, "~/{service}"' in source, f"docs/ros.md: /{node}/{service}"
    assert re.findall(r"ros2 service call (/\w+/\w+)", DOC) and all(
        tuple(name.strip("/").split("/")) in set(services)
        for name in re.findall(r"ros2 service call (/\w+/\w+)", DOC)
    )


def test_every_topic_named_is_one_the_code_or_the_parameter_file_uses():
    sources = "\n".join(p.read_text() for p in (REPO / "geoloc_ros").rglob("*.py"))
    sources += (REPO / "config" / "geoloc.yaml").read_text()
    services = {f"/{a}/{b}" for a, b in re.findall(r"`/(\w+)/(\w+)`", str(table_rows("| service |")))}
    topics = {t for t in ticked(PROSE) if re.fullmatch(r"/[\w/]+", t)} - services - EXTERNAL_TOPICS
    assert len(topics) >= 15
    unknown = sorted(t for t in topics if f'"{t}"' not in sources and f" {t}\n" not in sources)
    assert not unknown, f"docs/ros.md names topics nothing uses: {unknown}"


def test_every_launch_argument_is_declared_and_every_command_exists():
    tree = ast.parse((REPO / "launch" / "geoloc.launch.py").read_text())
    arguments = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS"
    )
    used = set(re.findall(r"\b(\w+):=", DOC))
    documented = {ticked(row[0])[0] for row in table_rows("| argument |")}
    assert used <= set(arguments), f"docs/ros.md uses undeclared launch arguments {used - set(arguments)}"
    assert documented == set(arguments), f"launch arguments documented {documented} != declared"

    from geoloc_ros.cli.main import SUBCOMMANDS

    commands = set(re.findall(r"`geoloc (\w+)", DOC)) | set(re.findall(r"^geoloc (\w+)", DOC, re.M))
    assert commands and commands <= set(SUBCOMMANDS), (
        f"unknown geoloc commands: {commands - set(SUBCOMMANDS)}"
    )
    launch_files = set(re.findall(r"ros2 launch geoloc_ros (\S+)", DOC))
    assert launch_files and all((REPO / "launch" / name).is_file() for name in launch_files)


def test_the_readme_names_the_constraint_sets_that_exist():
    names = set(re.findall(r"constraints-py[\d.]+\.txt", (REPO / "README.md").read_text()))
    assert names == {p.name for p in (REPO / "requirements").glob("constraints-py*.txt")}


@pytest.mark.ros
def test_the_qos_table_is_what_the_nodes_create(ros_context, tiny_map_dir, tiny_posenet_model):
    """Every topic a node publishes or subscribes (every optional input switched on) has its row in the
    QoS table, with the reliability and depth the node uses, and every row is used."""
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    from geoloc_ros.nodes.bovw_localizer import BovwLocalizerNode
    from geoloc_ros.nodes.camera_ingest import CameraIngestNode
    from geoloc_ros.nodes.pose_fusion import PoseFusionNode
    from geoloc_ros.nodes.posenet_localizer import PoseNetLocalizerNode
    from geoloc_ros.nodes.stack import flatten_parameters

    documented = {}
    for nodes, direction, parameters, reliability, depth in table_rows("| node | in / out |"):
        names = ["camera_ingest", "bovw_localizer", "posenet_localizer", "pose_fusion"]
        for node in names if nodes == "every node" else ticked(nodes):
            for parameter in ticked(parameters):
                documented[(node, direction, parameter)] = (reliability, int(depth))

    def built(cls, **values):
        return cls(
            context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]
        )

    nodes = [
        built(CameraIngestNode),
        built(BovwLocalizerNode, map_bundle=str(tiny_map_dir), verify="sizes", gps_topic="/qos/gps"),
        built(PoseNetLocalizerNode, model=str(tiny_posenet_model)),
        built(PoseFusionNode, origin_lat=48.0, origin_lon=2.0, odom_topic="/qos/odom", imu_topic="/qos/imu"),
    ]
    used = {}
    try:
        for node in nodes:
            name = node.get_name()
            by_topic = {"/diagnostics": "/diagnostics"}
            for parameter, value in flatten_parameters(node.config.model_dump()).items():
                if isinstance(value, str) and value.startswith("/"):
                    by_topic.setdefault(value, parameter)
            for topic in getattr(node, "pose_inputs", {}).values():
                by_topic[topic] = "pose_inputs"
            entities = [("in", s) for s in node.subscriptions] + [("out", p) for p in node.publishers]
            for direction, entity in entities:
                if entity.topic_name in ("/rosout", "/parameter_events"):
                    continue
                parameter = by_topic[entity.topic_name]
                qos = entity.qos_profile
                reliable = qos.reliability == ReliabilityPolicy.RELIABLE
                used[(name, direction, parameter)] = ("reliable" if reliable else "best effort", qos.depth)
    finally:
        for node in nodes:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
    assert used == documented
