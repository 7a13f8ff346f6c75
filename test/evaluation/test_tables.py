from __future__ import annotations

import numpy as np

from geoloc_ros.evaluation import (
    PAPER_BOVW_AUGMENTED,
    PAPER_POSENET,
    GroundTruth,
    evaluate_sources,
    format_markdown_table,
    format_text_table,
)
from geoloc_ros.evaluation.tables import REFERENCE_CAPTION
from geoloc_ros.geometry.covariance import UNKNOWN_VARIANCE
from geoloc_ros.geometry.estimate import PoseEstimate

NS = 1_000_000_000


def _metrics() -> list:
    stamps = np.arange(0, 201) * (NS // 20)
    gt = GroundTruth.from_enu(stamps, np.stack([stamps * 1e-8, np.zeros(201)], axis=1), yaw=np.zeros(201))
    fused = [
        PoseEstimate.planar(int(s), s * 1e-8, 0.5, 0.01, np.diag([0.25, 0.25, 0.001]), source="fused")
        for s in stamps[1:]
    ]
    gps = [
        PoseEstimate.planar(int(s), s * 1e-8, 3.5, 0.0, np.diag([25.0, 25.0, UNKNOWN_VARIANCE]), source="gps")
        for s in stamps[1::4]
    ]
    return evaluate_sources({"fused": fused, "gps": gps}, gt, n_frames=200).metrics


def test_text_table_has_the_seed_rows_and_the_references_apart() -> None:
    text = format_text_table(_metrics(), [PAPER_BOVW_AUGMENTED, PAPER_POSENET])
    ours, caption, published = text.partition(REFERENCE_CAPTION)
    assert caption and "another data set" not in ours and "not on this drive" in caption
    lines = ours.strip().splitlines()
    header = lines[0]
    assert "Fused" in header and "Consumer GPS" in header and "Seed" not in ours
    rows = {line.split("  ")[0].strip(): line for line in lines[2:]}
    assert "200/200 (100.0%)" in rows["Continuity"]
    assert "50/200 (25.0%)" in rows["Continuity"]
    assert "0.50m" in rows["Average Error"] and "3.50m" in rows["Average Error"]
    assert rows["Ratio in [0m,1m]"].split()[3:5] == ["100.00%", "0.00%"]
    assert "—" in rows["Heading Error (mean)"]  # GPS has no heading
    # Fused is 0.5 m to the left of the track, GPS 3.5 m: all cross-track, no along-track error.
    assert rows["Cross-track RMSE"].split()[-2:] == ["0.50m", "3.50m"]
    assert rows["Along-track RMSE"].split()[-2:] == ["0.00m", "0.00m"]
    assert rows["Recall (1m) of frames"].split()[-2:] == ["100.00%", "0.00%"]
    assert rows["Recall (5m) of frames"].split()[-2:] == ["100.00%", "25.00%"]
    # Columns line up: every row as long as the separator or shorter (right-stripped).
    assert all(len(line) <= len(lines[1]) for line in lines)
    # The published figures: their own table, only the rows they reported.
    published_lines = published.strip().splitlines()
    assert "Seed BoVW (augmented SV)" in published_lines[0] and "Seed PoseNet (seq. 1)" in published_lines[0]
    published_rows = {line.split("  ")[0].strip(): line for line in published_lines[2:]}
    assert "281/1046 (26.9%)" in published_rows["Continuity"] and "3.19m" in published_rows["Average Error"]
    assert "Cross-track RMSE" not in published_rows and "RMSE" not in published_rows


def test_markdown_table_is_well_formed() -> None:
    markdown = format_markdown_table(_metrics(), [PAPER_BOVW_AUGMENTED])
    ours, _caption, published = markdown.partition(REFERENCE_CAPTION)
    lines = ours.strip().strip("*").strip().splitlines()
    assert lines[0] == "| Metric | Fused | Consumer GPS |"
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert published.strip("*\n").splitlines()[0] == "| Metric | Seed BoVW (augmented SV) |"
    assert any(line.startswith("| Recall (0.25m, 2°) of frames |") for line in lines)
