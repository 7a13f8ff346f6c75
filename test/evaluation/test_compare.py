from __future__ import annotations

import json
from pathlib import Path

import pytest

from geoloc_ros.evaluation import EvaluationError
from geoloc_ros.evaluation.compare import compare_reports, flatten_figures, format_comparison_markdown


def write_metrics(directory: Path, sources: dict, metadata: dict | None = None) -> Path:
    directory.mkdir(parents=True)
    document = {"title": "t", "metadata": metadata or {}, "sources": sources}
    (directory / "metrics.json").write_text(json.dumps(document), encoding="utf-8")
    return directory


def _source(mean: float, gap: float | None, recall: float) -> dict:
    return {
        "source": "bovw",
        "n_frames": 10,
        "mean_error_m": mean,
        "error_bins": {"0-1m": 0.5},
        "recall": [{"position_m": 0.5, "heading_deg": 5.0, "of_frames": recall, "of_evaluated": None}],
        "availability": None if gap is None else {"longest_gap_s": gap},
    }


def test_flatten_names_nested_figures_and_skips_text_and_flags() -> None:
    flat = flatten_figures({**_source(1.5, 2.0, 0.25), "flag": True})
    assert flat == {
        "n_frames": 10,
        "mean_error_m": 1.5,
        "error_bins.0-1m": 0.5,
        "recall.0.5m_5deg.of_frames": 0.25,
        "recall.0.5m_5deg.of_evaluated": None,
        "availability.longest_gap_s": 2.0,
    }


def test_differences_per_source_and_figure(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "a", {"bovw": _source(2.0, 3.0, 0.25)}, {"map": "old"})
    b = write_metrics(
        tmp_path / "b", {"bovw": _source(1.5, None, 0.5), "fused": {"mean_error_m": 1.0}}, {"map": "new"}
    )
    comparison = compare_reports(a, b)
    assert comparison.metadata == {"map": ("old", "new")}
    rows = {d.figure: d for d in comparison.sources["bovw"]}
    assert rows["mean_error_m"].difference == pytest.approx(-0.5)
    assert rows["recall.0.5m_5deg.of_frames"].difference == pytest.approx(0.25)
    assert rows["n_frames"].difference == 0.0
    # A figure or a source on one side only is kept, with no difference.
    assert (rows["availability.longest_gap_s"].a, rows["availability.longest_gap_s"].b) == (3.0, None)
    assert rows["availability.longest_gap_s"].difference is None
    assert [(d.a, d.b) for d in comparison.sources["fused"]] == [(None, 1.0)]
    document = comparison.as_dict()
    assert document["sources"]["bovw"]["mean_error_m"] == {"a": 2.0, "b": 1.5, "difference": -0.5}
    markdown = format_comparison_markdown(comparison)
    assert "| mean_error_m | 2 | 1.5 | -0.5 |" in markdown
    assert "## bovw (3 of 7 figures differ)" in markdown and "| map | old | new |" in markdown


def test_a_directory_that_is_no_report_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"no metrics\.json"):
        compare_reports(tmp_path, tmp_path)
    (tmp_path / "metrics.json").write_text("[]")
    with pytest.raises(EvaluationError, match="not a report"):
        compare_reports(tmp_path, tmp_path)
