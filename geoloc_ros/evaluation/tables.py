"""The seed-style comparison table: one row per figure, one column per source.

The seed slides compare methods as::

    Continuity         137/1046   281/1046
    Average Error      3.82m      3.19m
    Ratio in [0m,1m]   21.89%     41.28%
    ...

:func:`format_text_table` prints that layout for the terminal and :func:`format_markdown_table`
for the report. The seed's own figures (:data:`PAPER_REFERENCES`, published on another data set) are
never columns of that table: they follow it as a separate, captioned table of the rows the seed
reported (:data:`REFERENCE_CAPTION`; cells it did not report show "—"). The seed's bins are written
"[0m,1m]"; ours are half-open [0, 1) m (an error of exactly 1 m falls in the second bin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geoloc_ros.evaluation.metrics import (
    ERROR_BIN_KEYS,
    INTEGRITY_PROBABILITY,
    RECALL_DISTANCES_M,
    RECALL_THRESHOLDS,
    RPE_WINDOW_M,
    RPE_WINDOW_S,
    SourceMetrics,
)
from geoloc_ros.geometry.sources import (
    SOURCE_BOVW,
    SOURCE_FUSED,
    SOURCE_GPS,
    SOURCE_POSENET,
    SOURCE_POSENET_SMOOTHED,
    SOURCE_POSENET_TEMPORAL,
)

MISSING = "—"

DISPLAY_NAMES = {
    SOURCE_BOVW: "BoVW",
    SOURCE_POSENET: "PoseNet",
    SOURCE_POSENET_TEMPORAL: "Temporal PoseNet",
    SOURCE_POSENET_SMOOTHED: "Smoothed PoseNet",
    SOURCE_FUSED: "Fused",
    SOURCE_GPS: "Consumer GPS",
}


def display_name(source: str) -> str:
    return DISPLAY_NAMES.get(source, source)


@dataclass(frozen=True)
class PaperReference:
    """A column of published figures, keyed by row id (see :data:`ROWS`)."""

    name: str
    cells: dict[str, str]


# Li Yu / F. Moutarde (seed slides): BoVW+RANSAC on 1046 query images, with the original and the
# "augmented" (virtual views) Street View; and the GIS-trained pose-regression CNN (sequence 1:
# 7.62 m average; the summary slide quotes "~7 m and 23°").
PAPER_BOVW_AUGMENTED = PaperReference(
    "Seed BoVW (augmented SV)",
    {
        "continuity": "281/1046 (26.9%)",
        "mean": "3.19m",
        "bin_0": "41.28%",
        "bin_1": "27.40%",
        "bin_2": "19.22%",
        "bin_3": "12.10%",
    },
)
PAPER_BOVW_ORIGINAL = PaperReference(
    "Seed BoVW (original SV)",
    {
        "continuity": "137/1046 (13.1%)",
        "mean": "3.82m",
        "bin_0": "21.89%",
        "bin_1": "28.47%",
        "bin_2": "44.53%",
        "bin_3": "5.11%",
    },
)
PAPER_POSENET = PaperReference("Seed PoseNet (seq. 1)", {"mean": "7.62m", "heading_mean": "~23°"})
PAPER_REFERENCES = (PAPER_BOVW_ORIGINAL, PAPER_BOVW_AUGMENTED, PAPER_POSENET)
REFERENCE_CAPTION = (
    "Published figures of the method this project grew from (Li Yu / F. Moutarde, on their own "
    "drive and Street View data, not on this drive; for orientation only, not comparable cell by cell):"
)


def _metres(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}m"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{100.0 * value:.2f}%"


def _degrees(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}°"


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _continuity(m: SourceMetrics) -> str:
    return f"{m.n_localized}/{m.n_frames} ({100.0 * m.continuity:.1f}%)"


def _bin(index: int) -> Callable[[SourceMetrics], str]:
    key = ERROR_BIN_KEYS[index]
    return lambda m: _percent(None if m.error_bins is None else m.error_bins[key])


def _metres_per_second(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}m/s"


def _seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}s"


def _recall(index: int) -> Callable[[SourceMetrics], str]:
    return lambda m: _percent(m.recall[index].of_frames)


def _recall_at(distance: float) -> Callable[[SourceMetrics], str]:
    return lambda m: _percent(m.recall_at_m.get(f"{distance:g}m"))


def _timing(attribute: str) -> Callable[[SourceMetrics], str]:
    return lambda m: _seconds(None if m.availability is None else getattr(m.availability, attribute))


def _losses(m: SourceMetrics) -> str:
    if m.availability is None:
        return MISSING
    a = m.availability
    return f"{a.n_losses} ({a.n_not_reacquired} not re-acquired)" if a.n_not_reacquired else str(a.n_losses)


_BIN_LABELS = ("Ratio in [0m,1m]", "Ratio in [1m,2m]", "Ratio in [2m,3m]", "Ratio in [3m,4m]", "Ratio > 4m")

# (row id, label, cell formatter)
ROWS: tuple[tuple[str, str, Callable[[SourceMetrics], str]], ...] = (
    ("continuity", "Continuity", _continuity),
    ("mean", "Average Error", lambda m: _metres(m.mean_error_m)),
    ("median", "Median Error", lambda m: _metres(m.median_error_m)),
    ("rmse", "RMSE", lambda m: _metres(m.rmse_m)),
    ("p95", "p95 Error", lambda m: _metres(m.p95_error_m)),
    ("p99", "p99 Error", lambda m: _metres(m.p99_error_m)),
    ("max", "Max Error", lambda m: _metres(m.max_error_m)),
    ("cross_track_rmse", "Cross-track RMSE", lambda m: _metres(m.cross_track_rmse_m)),
    ("cross_track_p95", "Cross-track p95", lambda m: _metres(m.cross_track_p95_m)),
    ("along_track_rmse", "Along-track RMSE", lambda m: _metres(m.along_track_rmse_m)),
    ("along_track_p95", "Along-track p95", lambda m: _metres(m.along_track_p95_m)),
    *((f"bin_{i}", label, _bin(i)) for i, label in enumerate(_BIN_LABELS)),
    ("heading_mean", "Heading Error (mean)", lambda m: _degrees(m.heading_mean_deg)),
    ("heading_median", "Heading Error (median)", lambda m: _degrees(m.heading_median_deg)),
    ("heading_rmse", "Heading Error (RMSE)", lambda m: _degrees(m.heading_rmse_deg)),
    *(
        (f"recall_{i}", f"Recall ({d:g}m, {a:g}°) of frames", _recall(i))
        for i, (d, a) in enumerate(RECALL_THRESHOLDS)
    ),
    *((f"recall_{d:g}m", f"Recall ({d:g}m) of frames", _recall_at(d)) for d in RECALL_DISTANCES_M),
    ("rpe_s", f"RPE per second ({RPE_WINDOW_S:g}s)", lambda m: _metres_per_second(m.rpe_per_second_rmse)),
    ("rpe_m", f"RPE per metre ({RPE_WINDOW_M:g}m)", lambda m: _percent(m.rpe_per_metre_rmse)),
    ("coverage", "Inside 95% ellipse", lambda m: _percent(m.coverage_95)),
    (
        "false_confidence",
        f"Outside own {100 * INTEGRITY_PROBABILITY:g}% ellipse",
        lambda m: _percent(m.false_confidence),
    ),
    ("nees_position", "NEES position (2 dof)", lambda m: _number(m.mean_nees_position)),
    ("nees_pose", "NEES pose (3 dof)", lambda m: _number(m.mean_nees_pose)),
    ("time_to_first_fix", "Time to first fix", _timing("time_to_first_fix_s")),
    ("longest_gap", "Longest gap", _timing("longest_gap_s")),
    ("losses", "Losses (> 1 s without a good fix)", _losses),
    ("reacquisition_median", "Re-acquisition (median)", _timing("reacquisition_median_s")),
    ("reacquisition_max", "Re-acquisition (max)", _timing("reacquisition_max_s")),
)


def table_cells(metrics: Sequence[SourceMetrics]) -> tuple[list[str], list[list[str]]]:
    """Header (metric column + one per source) and the rows of cells."""
    header = ["", *(display_name(m.source) for m in metrics)]
    rows = [[label, *(cell(m) for m in metrics)] for _, label, cell in ROWS]
    return header, rows


def reference_cells(references: Sequence[PaperReference]) -> tuple[list[str], list[list[str]]]:
    """The published columns, only on the rows at least one of them reported."""
    header = ["", *(r.name for r in references)]
    rows = [
        [label, *(r.cells.get(row_id, MISSING) for r in references)]
        for row_id, label, _ in ROWS
        if any(row_id in r.cells for r in references)
    ]
    return header, rows


def _text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for k, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    header = ["Metric", *header[1:]]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def format_text_table(metrics: Sequence[SourceMetrics], references: Sequence[PaperReference] = ()) -> str:
    """Fixed-width table for the terminal; ``references`` follow as their own captioned table."""
    text = _text(*table_cells(metrics))
    if references:
        text += "\n" + REFERENCE_CAPTION + "\n\n" + _text(*reference_cells(references))
    return text


def format_markdown_table(metrics: Sequence[SourceMetrics], references: Sequence[PaperReference] = ()) -> str:
    """GitHub-flavoured Markdown table for the report; ``references`` follow as their own captioned
    table."""
    text = _markdown(*table_cells(metrics))
    if references:
        text += "\n*" + REFERENCE_CAPTION + "*\n\n" + _markdown(*reference_cells(references))
    return text
