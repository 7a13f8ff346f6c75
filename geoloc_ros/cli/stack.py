"""``geoloc stack``: every node in one process from the launch file's parameter file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("stack")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="ROS parameter file (default: the package's config/geoloc.yaml).",
)
@click.option(
    "--map",
    "map_bundle",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Map bundle directory.",
)
@click.option(
    "--posenet",
    "posenet_model",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="PoseNet .onnx model (without it, the PoseNet localizer is not started).",
)
@click.option(
    "--mounting",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="camera_mounting.yaml of the vehicle.",
)
@click.option(
    "--bag",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Replay this bag with /clock (all nodes on use_sim_time).",
)
@click.option("--rate", type=click.FloatRange(min=0.0), default=1.0, show_default=True, help="Replay speed.")
def stack_command(
    config_path: Path | None,
    map_bundle: Path,
    posenet_model: Path | None,
    mounting: Path | None,
    bag: Path | None,
    rate: float,
) -> None:
    """Run camera ingestion, the localizers and fusion in one process (no ros2 launch needed)."""
    from geoloc_ros.nodes.isolation import enforce_loopback

    enforce_loopback(force=False)
    from geoloc_ros.errors import ConfigError
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.stack import load_parameter_file, run_stack, stack_overrides
    from geoloc_ros.resources import share_file

    config_file = config_path or share_file("config/geoloc.yaml")
    if config_file is None:
        raise ConfigError("no parameter file: pass --config (config/geoloc.yaml is not installed)")
    parameters = load_parameter_file(config_file)
    map_camera = MapBundle.open(map_bundle, verify="none").camera
    click.echo(
        f"processing camera from the map: {map_camera.width}x{map_camera.height}, "
        f"hfov {map_camera.hfov_deg:.1f} deg"
    )
    nodes, overrides = stack_overrides(map_bundle, map_camera, posenet_model, mounting)
    run_stack(parameters, nodes, overrides, map_bundle, bag=bag, rate=rate, echo=click.echo)
