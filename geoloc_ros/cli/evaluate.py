"""``geoloc evaluate``: every source on a drive bag vs RTK ground truth: a seed-style table and a report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from geoloc_ros import __version__


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def evaluate_to_report(
    bag: Path,
    map_dir: Path,
    posenet: Path | None,
    out: Path,
    config_path: Path | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
    panorama_truth: Path | None = None,
) -> str:
    """Run, evaluate and write the report; returns the text table (also used by ``geoloc demo``).

    ``panorama_truth``: a simulator's ``panoramas_truth.jsonl`` (found beside a simulated drive when
    None): the report then states the map's own panorama pose error beside the localization error.
    """
    from geoloc_ros.config import load_yaml
    from geoloc_ros.evaluation.groundtruth import drive_ground_truth
    from geoloc_ros.evaluation.maperror import find_panorama_truth, panorama_pose_errors
    from geoloc_ros.evaluation.run import (
        EvaluateConfig,
        evaluate_run,
        run_drive,
        write_run_report,
    )
    from geoloc_ros.evaluation.tables import SEED_REFERENCES, format_text_table
    from geoloc_ros.io.atomic import OutputExistsError
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.mapping.map import MapBundle

    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {out} already exists (pass --overwrite to replace it)")
    config = load_yaml(config_path, EvaluateConfig) if config_path else EvaluateConfig()
    if max_frames is not None:
        config = config.model_copy(update={"max_frames": max_frames})
    bundle = MapBundle.open(map_dir)
    drive = DriveBag(bag, config.topics)
    run = run_drive(drive, bundle, posenet, config)
    result = evaluate_run(run, drive_ground_truth(drive, bundle.origin))
    metadata = {
        "bag": str(bag),
        "map": str(map_dir),
        "posenet": str(posenet) if posenet else "none",
        "frames": len(run.frame_stamps_ns),
        "geoloc_ros": f"{__version__} ({git_revision()})",
    }
    truth_path = panorama_truth if panorama_truth is not None else find_panorama_truth(bag)
    if truth_path is not None:
        metadata["map panorama error"] = panorama_pose_errors(bundle, truth_path).describe()
    write_run_report(out, run, result, bundle, metadata, overwrite=overwrite)
    return format_text_table(result.metrics, SEED_REFERENCES)


@click.command("evaluate")
@click.option(
    "--bag",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Drive bag (or the drive directory holding bag/ and camera_mounting.yaml).",
)
@click.option(
    "--map", "map_dir", type=click.Path(exists=True, path_type=Path), required=True, help="Map bundle."
)
@click.option(
    "--posenet", type=click.Path(exists=True, path_type=Path), default=None, help="PoseNet .onnx model."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report directory.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="YAML of geoloc_ros.evaluation.run.EvaluateConfig (topics, localizer, fusion).",
)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Only the first N frames.")
@click.option(
    "--panorama-truth",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Simulator's panoramas_truth.jsonl (default: found beside a simulated drive): reports the "
    "map's own panorama pose error.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def evaluate_command(
    bag: Path,
    map_dir: Path,
    posenet: Path | None,
    out: Path,
    config_path: Path | None,
    max_frames: int | None,
    panorama_truth: Path | None,
    overwrite: bool,
) -> None:
    """Localize BAG with every source (BoVW, PoseNet, temporal PoseNet, fusion, consumer GPS) and evaluate
    them against its RTK ground truth: a seed-style table on the terminal and a report in OUT."""
    table = evaluate_to_report(bag, map_dir, posenet, out, config_path, max_frames, overwrite, panorama_truth)
    click.echo(table)
    click.echo(f"\nreport: {out / 'report.md'}")
