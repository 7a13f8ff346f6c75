from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from evo.core import metrics as evo_metrics
from evo.core import sync
from evo.tools import file_interface
from matplotlib.image import imread

from geoloc_ros.evaluation import EvaluationResult, GroundTruth, evaluate_sources, write_report
from geoloc_ros.evaluation.figures import (
    plot_error_cdf,
    plot_error_map,
    plot_error_over_time,
    plot_error_sigma,
    plot_map,
)
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.io.tum import read_tum

NS = 1_000_000_000


def _result() -> EvaluationResult:
    """A 20 s loop with RTK at 10 Hz, a 2 s RTK gap, and two noisy sources at 20 Hz."""
    t = np.arange(0, 201) * 0.1
    keep = (t < 8.0) | (t > 10.0)  # RTK gap
    angle = 2 * math.pi * t / 20.0
    positions = 30.0 * np.stack([np.cos(angle), np.sin(angle), np.zeros_like(t)], axis=1)
    gt = GroundTruth.from_enu(np.round(t[keep] * NS).astype(np.int64), positions[keep])
    rng = np.random.default_rng(3)
    frames = np.arange(1, 400) * (NS // 20)
    by_source: dict[str, list[PoseEstimate]] = {"bovw": [], "fused": []}
    for s in frames:
        a = 2 * math.pi * s * 1e-9 / 20.0
        x, y, yaw = 30 * math.cos(a), 30 * math.sin(a), a + math.pi / 2
        for name, std in (("bovw", 0.3), ("fused", 0.1)):
            if name == "bovw" and rng.random() < 0.2:
                continue
            dx, dy = rng.normal(0, std, 2)
            cov = np.diag([std**2, std**2, math.radians(1.0) ** 2])
            by_source[name].append(PoseEstimate.planar(int(s), x + dx, y + dy, yaw, cov, source=name))
    return evaluate_sources(by_source, gt, frame_stamps_ns=frames)


def test_report_files_are_written(tmp_path: Path) -> None:
    result = _result()
    out = tmp_path / "report"
    files = write_report(
        out,
        result,
        panoramas_xy=[[30.0, 0.0], [0.0, 30.0], [-30.0, 0.0]],
        metadata={"bag": "tiny.mcap"},
        diagnostics={"fused": {"resets": 0}},
    )
    assert files.markdown.is_file() and files.metrics_json.is_file() and files.table_text.is_file()
    for png in files.figures:
        image = imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.05  # not a blank canvas
    markdown = files.markdown.read_text()
    assert "| Metric | BoVW | Fused |" in markdown and "Seed BoVW (augmented SV)" in markdown
    # The published columns come after their caption, never beside this drive's figures.
    assert markdown.index("not on this drive") < markdown.index("Seed BoVW (augmented SV)")
    assert "![Cross- and along-track error" in markdown and "figures/error_map.png" in markdown
    assert "![Map" in markdown and "evo_ape tum tum/groundtruth.tum tum/fused.tum" in markdown
    assert "in gap" in markdown  # estimates inside the RTK gap are reported as not evaluated
    document = json.loads(files.metrics_json.read_text())  # strict JSON: no NaN
    fused = document["sources"]["fused"]
    assert fused["cross_track_rmse_m"] > 0 and fused["availability"]["time_to_first_fix_s"] == 0.0
    assert set(fused["recall_at_m"]) == {"1m", "3m", "5m"}
    assert fused["n_outside_ground_truth"] > 0
    assert fused["mean_error_m"] == pytest.approx(result.sources["fused"].metrics.mean_error_m)
    assert document["metadata"] == {"bag": "tiny.mcap"}
    assert sorted(p.name for p in files.tum) == sorted(
        ["groundtruth.tum", "bovw.tum", "bovw.groundtruth.tum", "fused.tum", "fused.groundtruth.tum"]
    )
    evaluated = set()
    for evaluation in result.sources.values():
        evaluated |= set(evaluation.associated.stamps_ns[evaluation.associated.evaluated].tolist())
    assert read_tum(out / "tum" / "groundtruth.tum").stamps_ns.tolist() == sorted(evaluated)
    rows = (out / "errors" / "bovw.csv").read_text().splitlines()
    assert len(rows) == 1 + result.sources["bovw"].metrics.n_localized
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary left behind


def _evo_ape(reference: Path, estimate: Path) -> evo_metrics.APE:
    """evo's APE as ``evo_ape tum REFERENCE ESTIMATE`` computes it (translation, no alignment)."""
    ref = file_interface.read_tum_trajectory_file(str(reference))
    est = file_interface.read_tum_trajectory_file(str(estimate))
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data(sync.associate_trajectories(ref, est))
    return ape


def test_every_tum_pair_of_the_report_gives_evo_the_table_numbers(tmp_path: Path) -> None:
    """Each source against ``tum/groundtruth.tum`` and against its own ``.groundtruth.tum``."""
    result = _result()
    files = write_report(tmp_path / "r", result)
    tum = tmp_path / "r" / "tum"
    estimates = sorted(p for p in files.tum if p.name != "groundtruth.tum" and ".groundtruth" not in p.name)
    assert [p.stem for p in estimates] == ["bovw", "fused"]
    statistics = evo_metrics.StatisticsType
    for estimate in estimates:
        m = result.sources[estimate.stem].metrics
        for reference in (tum / "groundtruth.tum", tum / f"{estimate.stem}.groundtruth.tum"):
            ape = _evo_ape(reference, estimate)
            assert ape.error.size == m.n_evaluated, reference.name
            assert ape.get_statistic(statistics.mean) == pytest.approx(m.mean_error_m, abs=1e-6)
            assert ape.get_statistic(statistics.median) == pytest.approx(m.median_error_m, abs=1e-6)
            assert ape.get_statistic(statistics.rmse) == pytest.approx(m.rmse_m, abs=1e-6)
            assert ape.get_statistic(statistics.max) == pytest.approx(m.max_error_m, abs=1e-6)
    # Every file is planar (docs/formats.md): z = 0 and pure-yaw orientations.
    for path in files.tum:
        trajectory = read_tum(path)
        assert np.all(trajectory.positions[:, 2] == 0.0) and np.all(trajectory.quaternions_xyzw[:, :2] == 0.0)


def test_existing_report_is_refused_unless_overwrite(tmp_path: Path) -> None:
    result = _result()
    write_report(tmp_path / "r", result)
    with pytest.raises(OutputExistsError):
        write_report(tmp_path / "r", result)
    write_report(tmp_path / "r", result, title="again", overwrite=True)
    assert (tmp_path / "r" / "report.md").read_text().startswith("# again")


def test_figures_are_png_images() -> None:
    result = _result()
    for png in (
        plot_map(result.ground_truth, result.sources),
        plot_error_over_time(result.ground_truth, result.sources),
        plot_error_cdf(result.sources),
        plot_map(result.ground_truth, {}),
        plot_error_sigma(result.ground_truth, result.sources),
        plot_error_sigma(result.ground_truth, {}),
        plot_error_map(result.ground_truth, result.sources),
        plot_error_map(result.ground_truth, {}),
    ):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
