"""``geoloc evaluate``: every source on a drive bag vs RTK ground truth: a seed-style table and a report."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geoloc_ros import __version__
from geoloc_ros.cli.common import output_options

if TYPE_CHECKING:
    from geoloc_ros.mapping.map import MapBundle


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


def _report_metadata(
    bag: Path, map_dir: Path, bundle: MapBundle, panorama_truth: Path | None, inputs: dict[str, Any]
) -> dict[str, Any]:
    """What a report says of its inputs: the drive, the map, ``inputs`` (model or estimates, frame
    count), the version, and the map's own panorama pose error where a simulator's truth is known
    (``panorama_truth``, else found beside the drive)."""
    from geoloc_ros.evaluation.maperror import find_panorama_truth, panorama_pose_errors

    metadata: dict[str, Any] = {
        "bag": str(bag),
        "map": str(map_dir),
        **inputs,
        "geoloc_ros": f"{__version__} ({git_revision()})",
    }
    truth_path = panorama_truth if panorama_truth is not None else find_panorama_truth(bag)
    if truth_path is not None:
        metadata["map panorama error"] = panorama_pose_errors(bundle, truth_path).describe()
    return metadata


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
    from geoloc_ros.evaluation.tables import PAPER_REFERENCES, format_text_table
    from geoloc_ros.io.atomic import check_output_writable
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.pipelines.evaluate_drive import (
        EvaluateConfig,
        evaluate_run,
        run_drive,
        write_run_report,
    )

    check_output_writable(out, overwrite)
    config = load_yaml(config_path, EvaluateConfig) if config_path else EvaluateConfig()
    if max_frames is not None:
        config = config.model_copy(update={"max_frames": max_frames})
    bundle = MapBundle.open(map_dir)
    drive = DriveBag(bag, config.topics)
    run = run_drive(drive, bundle, posenet, config)
    result = evaluate_run(run, drive_ground_truth(drive, bundle.origin))
    inputs = {"posenet": str(posenet) if posenet else "none", "frames": len(run.frame_stamps_ns)}
    metadata = _report_metadata(bag, map_dir, bundle, panorama_truth, inputs)
    write_run_report(out, run, result, bundle, metadata, overwrite=overwrite)
    return format_text_table(result.metrics, PAPER_REFERENCES)


def evaluate_estimates_to_report(
    bag: Path,
    map_dir: Path,
    estimates_path: Path,
    out: Path,
    config_path: Path | None = None,
    overwrite: bool = False,
    panorama_truth: Path | None = None,
) -> str:
    """Evaluate recorded estimates (``estimates.jsonl`` of ``geoloc localize`` or ``geoloc stack
    --record``) against the drive's RTK and write the report; returns the text table. A source whose
    stamps are not camera frames (e.g. a filter publishing at its own rate) is held at the frames
    (``gps_hold_s`` of the config), as the offline evaluation does with consumer GPS.
    ``panorama_truth`` as :func:`evaluate_to_report`."""
    import numpy as np

    from geoloc_ros.config import load_yaml
    from geoloc_ros.evaluation.groundtruth import drive_ground_truth
    from geoloc_ros.evaluation.metrics import evaluate_sources, hold_at_frames
    from geoloc_ros.evaluation.report import write_report
    from geoloc_ros.evaluation.tables import DISPLAY_NAMES, PAPER_REFERENCES, format_text_table
    from geoloc_ros.io.atomic import check_output_writable
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.io.estimates import group_by_source, read_estimates
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.pipelines.evaluate_drive import EvaluateConfig

    check_output_writable(out, overwrite)
    config = load_yaml(config_path, EvaluateConfig) if config_path else EvaluateConfig()
    bundle = MapBundle.open(map_dir)
    drive = DriveBag(bag, config.topics)
    frames = drive.frame_stamps()
    by_source = group_by_source(read_estimates(estimates_path))
    order = [s for s in DISPLAY_NAMES if s in by_source] + sorted(
        s for s in by_source if s not in DISPLAY_NAMES
    )
    ordered = {}
    for source in order:
        estimates = by_source[source]
        on_frames = np.isin([e.stamp_ns for e in estimates], frames).all()
        ordered[source] = estimates if on_frames else hold_at_frames(estimates, frames, config.gps_hold_s)
    result = evaluate_sources(
        ordered, drive_ground_truth(drive, bundle.origin), frame_stamps_ns=frames, n_frames=len(frames)
    )
    inputs = {"estimates": str(estimates_path), "frames": len(frames)}
    metadata = _report_metadata(bag, map_dir, bundle, panorama_truth, inputs)
    write_report(
        out,
        result,
        panoramas_xy=np.asarray(bundle.panorama_positions)[:, :2],
        metadata=metadata,
        overwrite=overwrite,
    )
    return format_text_table(result.metrics, PAPER_REFERENCES)


def _compare(report_a: Path, report_b: Path, out: Path | None, overwrite: bool, as_json: bool) -> None:
    import json

    from geoloc_ros.evaluation.compare import compare_reports, format_comparison_markdown
    from geoloc_ros.io.atomic import atomic_directory

    comparison = compare_reports(report_a, report_b)
    markdown = format_comparison_markdown(comparison)
    document = json.dumps(comparison.as_dict(), indent=2, allow_nan=False)
    if out is not None:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            (tmp / "compare.md").write_text(markdown, encoding="utf-8")
            (tmp / "compare.json").write_text(document + "\n", encoding="utf-8")
    click.echo(document if as_json else markdown)


@click.command("evaluate")
@click.option(
    "--bag",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Drive bag (or the drive directory holding bag/ and camera_mounting.yaml).",
)
@click.option(
    "--map", "map_dir", type=click.Path(exists=True, path_type=Path), default=None, help="Map bundle."
)
@click.option(
    "--posenet", type=click.Path(exists=True, path_type=Path), default=None, help="PoseNet .onnx model."
)
@output_options(
    "Report directory (with --compare: where to write compare.md and compare.json).",
    name="out",
    required=False,
    inputs=("bag", "map_dir", "posenet", "estimates_path", "compare", "panorama_truth"),
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="YAML of geoloc_ros.pipelines.evaluate_drive.EvaluateConfig (topics, localizer, fusion).",
)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Only the first N frames.")
@click.option(
    "--estimates",
    "estimates_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Evaluate these estimates (estimates.jsonl of geoloc localize or geoloc stack --record) "
    "instead of running the localizers.",
)
@click.option(
    "--compare",
    "compare",
    nargs=2,
    type=click.Path(exists=True, path_type=Path),
    default=None,
    metavar="REPORT_A REPORT_B",
    help="Instead of evaluating: compare two reports figure by figure (B - A per source).",
)
@click.option(
    "--panorama-truth",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Simulator's panoramas_truth.jsonl (default: found beside a simulated drive): reports the "
    "map's own panorama pose error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead of the table.")
def evaluate_command(
    bag: Path | None,
    map_dir: Path | None,
    posenet: Path | None,
    out: Path | None,
    config_path: Path | None,
    max_frames: int | None,
    estimates_path: Path | None,
    compare: tuple[Path, Path] | None,
    panorama_truth: Path | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Localize BAG with every source (BoVW, PoseNet, temporal PoseNet, fusion, consumer GPS) and evaluate
    them against its RTK ground truth: a seed-style table on the terminal and a report in OUT.

    With --estimates FILE, evaluate recorded estimates (a live run recorded by geoloc stack --record,
    or geoloc localize's output) instead of running the localizers. With --compare REPORT_A
    REPORT_B, compare two reports (e.g. before and after a change)."""
    if compare:
        given = (bag, map_dir, posenet, max_frames, estimates_path)
        if any(value is not None for value in given):
            raise click.UsageError(
                "--compare takes two reports; it cannot be combined with --bag/--map/--posenet/--estimates"
            )
        _compare(compare[0], compare[1], out, overwrite, as_json)
        return
    missing = [name for name, value in (("--bag", bag), ("--map", map_dir), ("--out", out)) if value is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --compare REPORT_A REPORT_B)")
    assert bag is not None and map_dir is not None and out is not None
    if estimates_path is not None:
        if posenet is not None or max_frames is not None:
            raise click.UsageError("--estimates evaluates recorded poses: drop --posenet and --max-frames")
        table = evaluate_estimates_to_report(
            bag, map_dir, estimates_path, out, config_path, overwrite, panorama_truth
        )
    else:
        table = evaluate_to_report(
            bag, map_dir, posenet, out, config_path, max_frames, overwrite, panorama_truth
        )
    if as_json:
        click.echo((out / "metrics.json").read_text(encoding="utf-8"), nl=False)
        return
    click.echo(table)
    click.echo(f"\nreport: {out / 'report.md'}")
