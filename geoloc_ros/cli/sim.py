"""``geoloc sim``: generate a synthetic town (panorama set + drive rosbag2 + ground truth)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from geoloc_ros.cli.common import echo_summary, json_option, output_options
from geoloc_ros.sim.scenario import PRESETS


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@click.command("sim")
@click.option(
    "--scenario",
    "scenario_name",
    default="standard",
    show_default=True,
    help=f"A preset ({', '.join(PRESETS)}) or a scenario YAML file.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same data).")
@output_options("Output directory (panorama set, drive, ground truth).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
@click.option(
    "--drive-seed",
    type=int,
    default=None,
    help="Seed of the drive alone (speed profile, light, image and sensor noise; default: --seed). "
    "The town, its panoramas and the route come from --seed.",
)
@click.option(
    "--drive-only",
    is_flag=True,
    help="Write the drive only (no panoramas): with the --seed and scenario of an existing set and "
    "another --drive-seed, a second drive through the same streets (a survey drive for map refine).",
)
@json_option
def sim_command(
    scenario_name: str,
    seed: int,
    out_dir: Path,
    overwrite: bool,
    workers: int | None,
    drive_seed: int | None,
    drive_only: bool,
    as_json: bool,
) -> None:
    """Simulate a town, its GIS panoramas and a vehicle drive into OUT.

    OUT gets panoramas/ (panorama set), drive/bag/ (rosbag2), drive/camera.yaml,
    drive/camera_mounting.yaml, drive/groundtruth.{tum,npz}, scenario.yaml and summary.json
    (with --drive-only: all but panoramas/ and panoramas_truth.jsonl).
    """
    from geoloc_ros.sim.generate import generate
    from geoloc_ros.sim.scenario import load_scenario

    scenario = load_scenario(scenario_name)
    # A SIGTERM (e.g. from a job runner) unwinds like Ctrl-C, so the partial output is removed.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        summary = generate(
            scenario,
            out_dir,
            seed=seed,
            overwrite=overwrite,
            workers=workers,
            drive_seed=drive_seed,
            drive_only=drive_only,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = (
        f"{out_dir}: {summary.panoramas} panoramas, {summary.frames} frames "
        f"({summary.route_length_m:.0f} m, {summary.duration_s:.1f} s) in {summary.seconds_total:.1f} s"
    )
    echo_summary(summary, text, as_json)
