"""``geoloc localize``: localize a drive bag offline with BoVW retrieval + PnP-RANSAC against a map bundle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from geoloc_ros.cli.common import bag_option, json_option, map_option, output_options

if TYPE_CHECKING:
    from geoloc_ros.mapping.container import Verification


def _summary_text(summary: dict[str, Any], out_dir: Path) -> str:
    lines = [
        f"wrote {out_dir}: {summary['localized']} of {summary['frames']} frames localized "
        f"({100 * summary['continuity']:.1f}%) in {summary['wall_s']:.1f} s "
        f"({summary['frames_per_s']} frames/s, setup {summary['setup_s']:.1f} s)",
        "status: " + ", ".join(f"{k} {v}" for k, v in summary["status_counts"].items()),
        f"{'stage':<10} {'median':>8} {'p95':>8} {'p99':>8}  (ms per frame)",
    ]
    for stage, stats in summary["stage_ms"].items():
        lines.append(
            f"{stage:<10} {stats['median_ms']:>8.1f} {stats['p95_ms']:>8.1f} {stats['p99_ms']:>8.1f}"
        )
    return "\n".join(lines)


@click.command("localize")
@bag_option("every camera frame is localized", required=True)
@map_option(required=True)
@output_options(
    "Output directory (estimates, TUM trajectory, per-frame records, summary).",
    inputs=("bag", "map_dir"),
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Localizer settings (YAML, LocalizerConfig); defaults are the benchmark's.",
)
@click.option(
    "--gps-prior/--no-gps-prior",
    default=False,
    show_default=True,
    help="Limit global re-localization to views around the bag's consumer GPS fix, and gate poses by it.",
)
@click.option("--max-frames", type=click.IntRange(min=1), help="Only the first N frames.")
@click.option(
    "--pipeline/--no-pipeline",
    default=True,
    show_default=True,
    help="Extract the next frame's features on a second thread (same results, faster).",
)
@click.option(
    "--verify",
    type=click.Choice(["full", "sizes", "none"]),
    default="full",
    show_default=True,
    help="Bundle check at opening: full checksums, file sizes, or none.",
)
@json_option
def localize_command(
    bag: Path,
    map_dir: Path,
    out_dir: Path,
    config_path: Path | None,
    gps_prior: bool,
    max_frames: int | None,
    pipeline: bool,
    verify: str,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Localize every frame of BAG against the map bundle and write estimates (JSONL with covariances),
    a TUM trajectory, per-frame records and a summary into OUT."""
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.localize.config import load_localizer_config
    from geoloc_ros.localize.localizer import Localizer
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.pipelines.localize_drive import GpsPriors, localize_drive, write_outputs

    config = load_localizer_config(config_path)
    started = time.perf_counter()
    bundle = MapBundle.open(map_dir, verify=cast("Verification", verify))
    drive = DriveBag(bag)
    localizer = Localizer(bundle, config, drive.mounting, drive.camera)
    priors = GpsPriors(drive, bundle.origin) if gps_prior else None
    setup_s = time.perf_counter() - started
    result = localize_drive(
        localizer, drive, gps_priors=priors, max_frames=max_frames, pipeline=pipeline, setup_s=setup_s
    )
    extra = {"bag": str(drive.bag_path), "map": str(bundle.path), "gps_prior": gps_prior}
    write_outputs(out_dir, result, localizer, extra, overwrite=overwrite)
    summary = {**result.summary(), **extra}
    click.echo(json.dumps(summary, indent=2) if as_json else _summary_text(summary, out_dir))
