"""``geoloc stack``: every node in one process from the launch file's parameter file."""

from __future__ import annotations

import time
from pathlib import Path

import click

from geoloc_ros.cli.common import echo_summary, json_option

# Seconds the stack keeps spinning after the bag's last message.
DRAIN_S = 2.0


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
    help="camera_mounting.yaml of the vehicle (default: the one of the --bag's drive directory, if any).",
)
@click.option(
    "--bag",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Replay this bag with /clock (all nodes on use_sim_time).",
)
@click.option("--rate", type=click.FloatRange(min=0.0), default=1.0, show_default=True, help="Replay speed.")
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write every published pose here on exit (estimates.jsonl, one TUM trajectory per source, "
    "summary.json), as geoloc localize does.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --record directory.")
@json_option
def stack_command(
    config_path: Path | None,
    map_bundle: Path,
    posenet_model: Path | None,
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
    import rclpy
    from rclpy.parameter import Parameter

    from geoloc_ros.errors import ConfigError
    from geoloc_ros.io.atomic import OutputExistsError
    from geoloc_ros.io.recording import recording_summary, summary_text, write_recording
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.recorder import EstimateRecorder, published_pose_topics
    from geoloc_ros.nodes.stack import (
        build_stack,
        destroy_nodes,
        load_parameter_file,
        stack_executor,
        stack_overrides,
    )
    from geoloc_ros.resources import share_file

    if record_dir is not None and record_dir.exists() and not overwrite:
        raise OutputExistsError(f"output {record_dir} already exists (pass --overwrite to replace it)")
    config_file = config_path or share_file("config/geoloc.yaml")
    if config_file is None:
        raise ConfigError("no parameter file: pass --config (config/geoloc.yaml is not installed)")
    parameters = load_parameter_file(config_file)
    if mounting is None and bag is not None:
        mounting = _drive_mounting(bag)
    map_camera = MapBundle.open(map_bundle, verify="none").camera
    click.echo(
        f"processing camera from the map: {map_camera.width}x{map_camera.height}, "
        f"hfov {map_camera.hfov_deg:.1f} deg"
    )
    nodes, overrides = stack_overrides(map_bundle, map_camera, posenet_model, mounting)

    rclpy.init()
    built: list = []
    replay = None
    recorder = None
    started = time.perf_counter()
    try:
        built = build_stack(parameters, nodes, overrides, use_sim_time=bag is not None)
        recorder = EstimateRecorder(published_pose_topics(built))
        if bag is not None:
            from geoloc_ros.nodes.replay import BagReplayNode

            replay = BagReplayNode(
                parameter_overrides=[
                    Parameter("bag", value=str(bag)),
                    Parameter("rate", value=float(rate)),
                    Parameter("map_bundle", value=str(map_bundle)),
                ]
            )
            built.append(replay)
        executor = stack_executor([*built, recorder])
        click.echo(f"running {', '.join(n.get_name() for n in built)}; Ctrl-C to stop")
        while rclpy.ok() and not (replay is not None and replay.done.is_set()):
            executor.spin_once(timeout_sec=0.2)
        # The bag has ended: let the localizers' last frames reach fusion and the recorder.
        drain_until = time.monotonic() + DRAIN_S
        while replay is not None and rclpy.ok() and time.monotonic() < drain_until:
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        destroy_nodes(built)
        estimates = recorder.estimates if recorder is not None else {}
        if recorder is not None:
            recorder.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    summary = recording_summary(estimates, time.perf_counter() - started)
    if replay is not None:
        summary["replayed_messages"] = replay.published
    if record_dir is not None:
        write_recording(record_dir, estimates, summary, overwrite=overwrite)
        summary["record"] = str(record_dir)
    text = summary_text(summary) + (f"\nrecorded to {record_dir}" if record_dir is not None else "")
    echo_summary(summary, text, as_json)
