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


def test_text_table_has_the_paper_rows_and_reference_columns() -> None:
    text = format_text_table(_metrics(), [PAPER_BOVW_AUGMENTED, PAPER_POSENET])
    lines = text.splitlines()
    header = lines[0]
    for column in ("Fused", "Consumer GPS", "Seed BoVW (augmented SV)", "Seed PoseNet (seq. 1)"):
        assert column in header
    rows = {line.split("  ")[0].strip(): line for line in lines[2:]}
    assert "200/200 (100.0%)" in rows["Continuity"]
    assert "50/200 (25.0%)" in rows["Continuity"]
    assert "281/1046 (26.9%)" in rows["Continuity"]
    assert (
        "0.50m" in rows["Average Error"]
        and "3.50m" in rows["Average Error"]
        and "3.19m" in rows["Average Error"]
    )
    assert rows["Ratio in [0m,1m]"].split()[3:5] == ["100.00%", "0.00%"]
    assert "41.28%" in rows["Ratio in [0m,1m]"]
    assert "—" in rows["Heading Error (mean)"]  # GPS has no heading
    # Columns line up: every row as long as the separator or shorter (right-stripped).
    assert all(len(line) <= len(lines[1]) for line in lines)


def test_markdown_table_is_well_formed() -> None:
    markdown = format_markdown_table(_metrics(), [PAPER_BOVW_AUGMENTED])
    lines = markdown.strip().splitlines()
    assert lines[0].startswith("| Metric | Fused | Consumer GPS | Seed BoVW (augmented SV) |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert any(line.startswith("| Recall (0.25m, 2°) of frames |") for line in lines)
