"""A drive's report: run every source (or read recorded estimates), evaluate them against the drive's
RTK ground truth and write the report (``geoloc evaluate``, ``geoloc demo``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from geoloc_ros import __version__
from geoloc_ros.config import load_yaml
from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.evaluation.maperror import find_panorama_truth, panorama_pose_errors
from geoloc_ros.evaluation.metrics import evaluate_recorded
from geoloc_ros.evaluation.report import write_report
from geoloc_ros.evaluation.tables import PAPER_REFERENCES, format_text_table
from geoloc_ros.io.atomic import check_output_writable
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.estimates import group_by_source, read_estimates
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.evaluate_drive import EvaluateConfig, evaluate_run, run_drive, write_run_report


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


def _open_inputs(
    bag: Path, map_dir: Path, out: Path, config_path: Path | None, overwrite: bool
) -> tuple[EvaluateConfig, MapBundle, DriveBag]:
    """The output checked first, then the config, the bundle and the drive."""
    check_output_writable(out, overwrite, inputs=[bag, map_dir])
    config = load_yaml(config_path, EvaluateConfig) if config_path else EvaluateConfig()
    return config, MapBundle.open(map_dir), DriveBag(bag, config.topics)


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
    config, bundle, drive = _open_inputs(bag, map_dir, out, config_path, overwrite)
    if max_frames is not None:
        config = config.model_copy(update={"max_frames": max_frames})
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
    --record``) against the drive's RTK and write the report; returns the text table. Sources off the
    camera frames are held at them for the config's ``gps_hold_s`` (:func:`evaluate_recorded`).
    ``panorama_truth`` as :func:`evaluate_to_report`."""
    config, bundle, drive = _open_inputs(bag, map_dir, out, config_path, overwrite)
    frames = drive.frame_stamps()
    by_source = group_by_source(read_estimates(estimates_path))
    result = evaluate_recorded(by_source, drive_ground_truth(drive, bundle.origin), frames, config.gps_hold_s)
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
