"""A drive's report: run every source (or read recorded estimates), evaluate them against the drive's
RTK ground truth and write the report (``geoloc evaluate``, ``geoloc demo``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from geoloc_ros import __version__
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
