"""``geoloc stack``: every node in one process from the launch file's parameter file."""

from __future__ import annotations

import time
from pathlib import Path

import click

from geoloc_ros.cli.common import (
    bag_option,
    echo_summary,
    json_option,
    map_option,
    output_options,
    posenet_option,
)


def _drive_mounting(bag: Path) -> Path | None:
    """The drive's camera_mounting.yaml, found as ``geoloc localize`` finds it (beside bag/)."""
    from geoloc_ros.io.drive import MOUNTING_NAME, DriveBag

    candidate = DriveBag(bag).drive_dir / MOUNTING_NAME
    if not candidate.is_file():
        return None
    click.echo(f"camera mounting from the drive: {candidate}")
    return candidate


@click.command("stack")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="ROS parameter file (default: the package's config/geoloc.yaml).",
)
@map_option(required=True)
@posenet_option("without it, the PoseNet localizer is not started")
@click.option(
    "--mounting",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="camera_mounting.yaml of the vehicle (default: the one of the --bag's drive directory, if any).",
)
@bag_option("replayed with /clock (all nodes on use_sim_time)")
@click.option("--rate", type=click.FloatRange(min=0.0), default=1.0, show_default=True, help="Replay speed.")
@output_options(
    "Write every published pose here on exit (estimates.jsonl, one TUM trajectory per source, "
    "summary.json), as geoloc localize does.",
    name="record_dir",
    flag="--record",
    required=False,
    inputs=("map_dir", "posenet", "bag", "mounting", "config_path"),
)
@json_option
def stack_command(
    config_path: Path | None,
    map_dir: Path,
    posenet: Path | None,
    mounting: Path | None,
    bag: Path | None,
    rate: float,
    record_dir: Path | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Run camera ingestion, the localizers and fusion in one process (no ros2 launch needed); on exit,
    print what they published (and write it to --record)."""
    from geoloc_ros.nodes.isolation import enforce_loopback

    enforce_loopback(force=False)
    from geoloc_ros.errors import ConfigError
    from geoloc_ros.io.recording import recording_summary, summary_text, write_recording
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.stack import load_parameter_file, run_stack, stack_overrides
    from geoloc_ros.resources import share_file

    config_file = config_path or share_file("config/geoloc.yaml")
    if config_file is None:
        raise ConfigError("no parameter file: pass --config (config/geoloc.yaml is not installed)")
    parameters = load_parameter_file(config_file)
    if mounting is None and bag is not None:
        mounting = _drive_mounting(bag)
    map_camera = MapBundle.open(map_dir, verify="none").camera
    click.echo(
        f"processing camera from the map: {map_camera.width}x{map_camera.height}, "
        f"hfov {map_camera.hfov_deg:.1f} deg"
    )
    nodes, overrides = stack_overrides(map_dir, map_camera, posenet, mounting)
    started = time.perf_counter()
    run = run_stack(parameters, nodes, overrides, map_dir, bag=bag, rate=rate, echo=click.echo)
    summary = recording_summary(run.estimates, time.perf_counter() - started)
    if run.replayed_messages is not None:
        summary["replayed_messages"] = run.replayed_messages
    if record_dir is not None:
        write_recording(record_dir, run.estimates, summary, overwrite=overwrite)
        summary["record"] = str(record_dir)
    text = summary_text(summary) + (f"\nrecorded to {record_dir}" if record_dir is not None else "")
    echo_summary(summary, text, as_json)
