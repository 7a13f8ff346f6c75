"""PoseNet on a recorded drive: per-frame, causal-temporal and smoothed accuracy against RTK (torch-free).

:func:`evaluate_drive` runs an exported model (onnxruntime) on every camera frame of a drive bag,
exactly as the vehicle would: the distorted on-board image is resampled onto the training camera
(``input_camera`` = the drive's camera) and the camera pose becomes a ``base_link`` pose through
the drive's camera mounting. The per-frame estimates then go through the temporal model, online
(:class:`~geoloc_ros.posenet.temporal.CausalPoseFilter`, what the node publishes) and offline
(:func:`~geoloc_ros.posenet.temporal.smooth_sequence`), and the three sequences are evaluated with
:mod:`geoloc_ros.evaluation` against the bag's RTK fixes and RTK orientation, like every other
source of the project (same association, metrics, seed bins and covariance coverage).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.evaluation.metrics import EvaluationResult, evaluate_sources
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_POSENET, SOURCE_POSENET_SMOOTHED, SOURCE_POSENET_TEMPORAL
from geoloc_ros.io.drive import DriveBag, Frame
from geoloc_ros.posenet.errors import InferenceError
from geoloc_ros.posenet.inference import PoseNetPredictor
from geoloc_ros.posenet.temporal import TemporalConfig, filter_sequence, smooth_sequence
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)


def model_map_origin(model_origin: GeoOrigin | None, map_origin: GeoOrigin | None, model: str) -> GeoOrigin:
    """The ``map`` frame's origin: the map's (checked against the model's) or the model's own."""
    if map_origin is not None:
        if model_origin is not None and not map_origin.same_frame(model_origin):
            raise InferenceError(
                f"{model}: trained in a map frame at {model_origin.to_dict()}, but the map's origin is "
                f"{map_origin.to_dict()}: the positions would not compare"
            )
        return map_origin
    if model_origin is None:
        raise InferenceError(
            f"{model}: the model does not record its map origin (trained without a map bundle): "
            f"give the map bundle it was trained on (--map)"
        )
    return model_origin


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_frames(
    predictor: PoseNetPredictor,
    frames: Iterator[Frame],
    *,
    batch_size: int = 8,
    total: int | None = None,
) -> tuple[list[PoseEstimate], np.ndarray]:
    """Per-frame ``base_link`` estimates of a stream of frames, and the frame stamps.

    Frames are run in batches of ``batch_size`` (the results do not depend on it); each estimate's
    ``info["inference_ms"]`` is its share of its batch's time.
    """
    estimates: list[PoseEstimate] = []
    stamps: list[int] = []
    progress = progress_bar(total=total, desc="PoseNet on drive", unit="frame")
    for batch in _batches(frames, batch_size):
        estimates.extend(predictor.predict_batch([f.image for f in batch], [f.stamp_ns for f in batch]))
        stamps.extend(f.stamp_ns for f in batch)
        progress.update(len(batch))
    progress.close()
    return estimates, np.asarray(stamps, dtype=np.int64)


def temporal_sequences(
    estimates: Sequence[PoseEstimate], config: TemporalConfig | None = None
) -> dict[str, list[PoseEstimate]]:
    """The per-frame estimates with their causal-filtered and smoothed versions, keyed by source."""
    config = config or TemporalConfig()
    causal = config.model_copy(update={"source": SOURCE_POSENET_TEMPORAL})
    smoothed = config.model_copy(update={"source": SOURCE_POSENET_SMOOTHED})
    return {
        SOURCE_POSENET: list(estimates),
        SOURCE_POSENET_TEMPORAL: filter_sequence(estimates, causal),
        SOURCE_POSENET_SMOOTHED: smooth_sequence(estimates, smoothed),
    }


@dataclass
class PoseNetDriveRun:
    """What :func:`run_posenet_drive` produced: the three PoseNet sequences over a drive."""

    estimates: dict[str, list[PoseEstimate]]
    frame_stamps_ns: np.ndarray
    provider: str
    seconds_inference: float


def drive_predictor(
    model_path: str | Path,
    drive: DriveBag,
    providers: str | Sequence[str] = "auto",
    intra_op_threads: int = 0,
) -> PoseNetPredictor:
    """A predictor for ``drive``'s frames: the drive's camera resampled onto the training camera,
    poses in ``base_link`` through the drive's mounting."""
    return PoseNetPredictor(
        model_path,
        providers=providers,
        t_base_optical=drive.mounting.base_to_optical(),
        input_camera=drive.camera,
        intra_op_threads=intra_op_threads,
    )


def run_posenet_drive(
    predictor: PoseNetPredictor,
    drive: DriveBag,
    *,
    temporal: TemporalConfig | None = None,
    batch_size: int = 8,
    max_frames: int | None = None,
) -> PoseNetDriveRun:
    """The one PoseNet-over-a-drive path (``geoloc posenet evaluate`` and ``geoloc evaluate``).

    Runs ``predictor`` (:func:`drive_predictor`) on every frame of ``drive`` (batched,
    :func:`predict_frames`) and returns the per-frame, causal-filtered and smoothed sequences
    (:func:`temporal_sequences`).
    """
    total = drive.n_frames if max_frames is None else min(max_frames, drive.n_frames)
    started = time.perf_counter()
    estimates, stamps = predict_frames(
        predictor, drive.frames(max_frames=max_frames), batch_size=batch_size, total=total
    )
    seconds = time.perf_counter() - started
    if not estimates:
        raise InferenceError(f"{drive.bag_path}: no decodable camera frame")
    logger.info(
        "%d frames in %.1f s (%.1f ms/frame with decoding and rectification) on %s",
        len(estimates),
        seconds,
        1e3 * seconds / len(estimates),
        predictor.provider,
    )
    return PoseNetDriveRun(temporal_sequences(estimates, temporal), stamps, predictor.provider, seconds)


@dataclass
class DriveEvaluation:
    """What :func:`evaluate_drive` measured."""

    estimates: dict[str, list[PoseEstimate]]
    result: EvaluationResult
    frame_stamps_ns: np.ndarray
    origin: GeoOrigin
    provider: str
    seconds_inference: float

    def summary(self) -> dict[str, Any]:
        """Headline figures per source (metres, degrees, shares) plus run facts, JSON-ready."""
        out: dict[str, Any] = {
            "frames": int(self.frame_stamps_ns.size),
            "provider": self.provider,
            "inference_ms_per_frame": 1e3 * self.seconds_inference / max(1, self.frame_stamps_ns.size),
        }
        for name, evaluation in self.result.sources.items():
            m = evaluation.metrics
            out[name] = {
                "median_error_m": m.median_error_m,
                "mean_error_m": m.mean_error_m,
                "heading_median_deg": m.heading_median_deg,
                "heading_mean_deg": m.heading_mean_deg,
                "coverage_95": m.coverage_95,
                "error_bins": m.error_bins,
            }
        return out


def evaluate_drive(
    model_path: str | Path,
    drive_path: str | Path,
    *,
    map_origin: GeoOrigin | None = None,
    temporal: TemporalConfig | None = None,
    providers: str | Sequence[str] = "auto",
    batch_size: int = 8,
    max_frames: int | None = None,
    intra_op_threads: int = 0,
) -> DriveEvaluation:
    """Run ``model_path`` on every frame of the drive at ``drive_path`` and evaluate three sources.

    The sources are ``posenet`` (single frame), ``posenet_temporal`` (causal filter) and
    ``posenet_smoothed`` (bidirectional smoother); continuity is counted over all camera frames.
    """
    drive = DriveBag(drive_path)
    predictor = drive_predictor(model_path, drive, providers, intra_op_threads)
    origin = model_map_origin(predictor.info.map_origin, map_origin, str(model_path))
    ground_truth = drive_ground_truth(drive, origin)
    run = run_posenet_drive(predictor, drive, temporal=temporal, batch_size=batch_size, max_frames=max_frames)
    result = evaluate_sources(run.estimates, ground_truth, frame_stamps_ns=run.frame_stamps_ns)
    return DriveEvaluation(
        run.estimates, result, run.frame_stamps_ns, origin, run.provider, run.seconds_inference
    )


ESTIMATES_FILE = "estimates.jsonl"
REPORT_DIR = "report"


def write_drive_evaluation(
    evaluation: DriveEvaluation,
    out_dir: str | Path,
    *,
    panoramas_xy: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """``out_dir/estimates.jsonl`` (every source, :mod:`geoloc_ros.io.estimates`) and the project's
    evaluation report in ``out_dir/report`` (table, metrics.json, figures, TUM files), atomically."""
    from geoloc_ros.evaluation.report import write_report
    from geoloc_ros.evaluation.tables import PAPER_POSENET
    from geoloc_ros.io.atomic import atomic_directory
    from geoloc_ros.io.estimates import write_estimates

    target = Path(out_dir)
    ordered = sorted(
        (e for sequence in evaluation.estimates.values() for e in sequence), key=lambda e: e.stamp_ns
    )
    meta = {
        **(metadata or {}),
        "provider": evaluation.provider,
        "frames": int(evaluation.frame_stamps_ns.size),
    }
    with atomic_directory(target, overwrite=overwrite) as tmp:
        write_estimates(tmp / ESTIMATES_FILE, ordered)
        write_report(
            tmp / REPORT_DIR,
            evaluation.result,
            panoramas_xy=panoramas_xy,
            references=(PAPER_POSENET,),
            title="PoseNet on a drive: single frame, causal temporal filter, offline smoother",
            metadata=meta,
        )
    return target
