from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.evaluation.metrics import ERROR_BIN_KEYS
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.sources import SOURCE_POSENET, SOURCE_POSENET_SMOOTHED, SOURCE_POSENET_TEMPORAL
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.estimates import group_by_source, read_estimates
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.posenet_drive import (
    ESTIMATES_FILE,
    REPORT_DIR,
    evaluate_drive,
    model_map_origin,
    temporal_sequences,
    write_drive_evaluation,
)
from geoloc_ros.posenet.errors import InferenceError
from geoloc_ros.posenet.inference import read_model_info

SOURCES = (SOURCE_POSENET, SOURCE_POSENET_TEMPORAL, SOURCE_POSENET_SMOOTHED)


def test_drive_evaluation_runs_every_frame_through_three_sources(
    tiny_map_model: Path, tiny_map_dir: Path, tiny_sim_dir: Path, tmp_path: Path
) -> None:
    bundle = MapBundle.open(tiny_map_dir, verify="sizes")
    info = read_model_info(tiny_map_model)
    assert info.map_origin == bundle.origin
    assert info.metadata.map_id == bundle.bundle_id  # checkpoint -> export keep the map's id
    drive_dir = tiny_sim_dir / "drive"
    evaluation = evaluate_drive(tiny_map_model, drive_dir, providers="cpu", batch_size=5)
    drive = DriveBag(drive_dir)
    n = drive.n_frames
    np.testing.assert_array_equal(evaluation.frame_stamps_ns, drive.frame_stamps())
    assert list(evaluation.estimates) == list(SOURCES)
    for source in SOURCES:
        metrics = evaluation.result.sources[source].metrics
        assert metrics.n_frames == n and metrics.n_localized == n
        assert metrics.median_error_m is not None and metrics.median_error_m >= 0
        assert metrics.heading_median_deg is not None
        assert metrics.error_bins is not None and set(metrics.error_bins) == set(ERROR_BIN_KEYS)
        assert metrics.coverage_95 is not None
    # The per-frame estimates are base_link poses from the drive's camera, rectified.
    first = evaluation.estimates[SOURCE_POSENET][0]
    assert first.info["provider"] == "CPUExecutionProvider" and first.info["dof"] == 3
    # Batching does not change the estimates.
    again = evaluate_drive(tiny_map_model, drive_dir, providers="cpu", batch_size=1, max_frames=7)
    for a, b in zip(again.estimates[SOURCE_POSENET], evaluation.estimates[SOURCE_POSENET][:7], strict=False):
        np.testing.assert_allclose(a.position, b.position, atol=1e-4)
    assert again.result.sources[SOURCE_POSENET].metrics.n_frames == 7

    out = write_drive_evaluation(evaluation, tmp_path / "eval", panoramas_xy=bundle.panorama_positions[:, :2])
    by_source = group_by_source(read_estimates(out / ESTIMATES_FILE))
    assert {k: len(v) for k, v in by_source.items()} == {s: n for s in SOURCES}
    metrics = json.loads((out / REPORT_DIR / "metrics.json").read_text())
    assert set(metrics["sources"]) == set(SOURCES)
    assert "Smoothed PoseNet" in (out / REPORT_DIR / "table.txt").read_text()


def test_ground_truth_and_origin(tiny_sim_dir: Path) -> None:
    drive = DriveBag(tiny_sim_dir / "drive")
    origin = GeoOrigin.from_dict(json.loads((tiny_sim_dir / "panoramas" / "origin.json").read_text()))
    truth = drive_ground_truth(drive, origin)
    assert truth.heading_source == "orientation" and len(truth) == len(drive.rtk())
    reference = np.load(tiny_sim_dir / "drive" / "groundtruth.npz")
    at = truth.at(reference["stamp_ns"])
    ok = at.valid
    assert ok.mean() > 0.9
    assert np.median(np.linalg.norm(at.positions[ok, :2] - reference["position_enu"][ok, :2], axis=1)) < 0.05
    other = GeoOrigin(origin.lat_deg + 0.01, origin.lon_deg, origin.alt_m)
    assert model_map_origin(origin, None, "m") == origin
    assert model_map_origin(None, other, "m") == other
    with pytest.raises(InferenceError, match="would not compare"):
        model_map_origin(origin, other, "m")
    with pytest.raises(InferenceError, match="give the map bundle"):
        model_map_origin(None, None, "m")


def test_temporal_sequences_label_the_sources(tiny_sim_dir: Path) -> None:
    from geoloc_ros.geometry.estimate import PoseEstimate

    rng = np.random.default_rng(0)
    estimates = [
        PoseEstimate.planar(int(k * 5e7), 2.0 * k * 0.05 + rng.normal(0, 1), rng.normal(0, 1), 0.0, np.eye(3))
        for k in range(40)
    ]
    sequences = temporal_sequences(estimates)
    assert [s for s in sequences] == list(SOURCES)
    assert {e.source for e in sequences[SOURCE_POSENET_SMOOTHED]} == {SOURCE_POSENET_SMOOTHED}
    assert {e.source for e in sequences[SOURCE_POSENET_TEMPORAL]} == {SOURCE_POSENET_TEMPORAL}
