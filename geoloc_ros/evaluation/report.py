"""The evaluation report: Markdown + JSON + PNG figures + TUM trajectories, written atomically.

Layout of the output directory (built in a temporary sibling and renamed into place)::

    report.md                  the seed-style table, definitions, figures, diagnostics
    metrics.json               every figure of every source (null where undefined)
    table.txt                  the terminal table
    figures/map.png            ground truth (green), estimates (red), panoramas (blue)
    figures/error_over_time.png
    figures/error_cdf.png
    figures/error_sigma.png    cross-/along-track error against each source's own +-3 sigma
    figures/error_map.png      estimates coloured by their position error
    errors/<source>.csv        per-frame errors
    tum/groundtruth.tum        ground truth at every stamp where some source was evaluated, planar
    tum/<source>.tum           the source's evaluated estimates, planar
    tum/<source>.groundtruth.tum  ground truth at exactly that source's stamps, planar

Every TUM file follows the project's one convention (docs/formats.md, "TUM trajectories"):
``base_link`` in ``map``, planar (z = 0, pure-yaw orientation), stamps of the estimates. So both
``evo_ape tum tum/groundtruth.tum tum/<source>.tum`` and ``evo_ape tum tum/<source>.groundtruth.tum
tum/<source>.tum`` (no alignment) give the source's mean / median / RMSE / max position error of the
table: evo's 3D translation error is our horizontal error. Where the ground-truth heading is unknown
the orientation is the identity: compare translations only there.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geoloc_ros.evaluation.figures import (
    plot_error_cdf,
    plot_error_map,
    plot_error_over_time,
    plot_error_sigma,
    plot_map,
)
from geoloc_ros.evaluation.groundtruth import GroundTruthStatus
from geoloc_ros.evaluation.metrics import (
    COVERAGE_PROBABILITY,
    INTEGRITY_PROBABILITY,
    LOSS_AFTER_S,
    LOSS_ERROR_M,
    RECALL_DISTANCES_M,
    RECALL_THRESHOLDS,
    RPE_WINDOW_M,
    RPE_WINDOW_S,
    AssociatedEstimates,
    EvaluationResult,
    SourceEvaluation,
)
from geoloc_ros.evaluation.tables import (
    PAPER_REFERENCES,
    PaperReference,
    display_name,
    format_markdown_table,
    format_text_table,
)
from geoloc_ros.io.atomic import atomic_directory
from geoloc_ros.io.tum import TumTrajectory, format_tum, planar_trajectory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportFiles:
    """Paths of what :func:`write_report` wrote (inside ``directory``)."""

    directory: Path
    markdown: Path
    metrics_json: Path
    table_text: Path
    figures: list[Path]
    tum: list[Path]
    errors_csv: list[Path]


def _json_ready(value: Any) -> Any:
    """Plain JSON: non-finite floats -> None, numpy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _safe_name(source: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in source)
    return cleaned or "unnamed"


def _source_tum_pair(associated: AssociatedEstimates) -> tuple[TumTrajectory, TumTrajectory]:
    ok = associated.evaluated
    stamps = associated.stamps_ns[ok]
    est_yaw = np.nan_to_num(associated.yaw[ok], nan=0.0)
    estimate = planar_trajectory(stamps, associated.positions[ok, :2], est_yaw)
    truth_yaw = np.nan_to_num(associated.truth.yaw[ok], nan=0.0)
    truth = planar_trajectory(stamps, associated.truth.positions[ok, :2], truth_yaw)
    return estimate, truth


def _ground_truth_tum(evaluations: Iterable[SourceEvaluation]) -> TumTrajectory:
    """The ground truth at every stamp where some source was evaluated, planar (the TUM convention)."""
    stamps: dict[int, tuple[float, float, float]] = {}
    for evaluation in evaluations:
        a = evaluation.associated
        ok = a.evaluated
        xy, yaws = a.truth.positions[ok, :2].tolist(), a.truth.yaw[ok].tolist()
        for stamp, (x, y), yaw in zip(a.stamps_ns[ok].tolist(), xy, yaws, strict=True):
            stamps[stamp] = (x, y, 0.0 if math.isnan(yaw) else yaw)
    ordered = sorted(stamps)
    rows = np.array([stamps[s] for s in ordered], dtype=float).reshape(-1, 3)
    return planar_trajectory(np.array(ordered, dtype=np.int64), rows[:, :2], rows[:, 2])


def _errors_csv(associated: AssociatedEstimates) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "stamp_ns",
            "est_x_m",
            "est_y_m",
            "est_z_m",
            "est_yaw_deg",
            "gt_x_m",
            "gt_y_m",
            "gt_z_m",
            "gt_yaw_deg",
            "error_2d_m",
            "heading_error_deg",
            "gt_status",
        ]
    )
    heading = np.degrees(associated.heading_error)
    err = associated.position_error_2d
    for i in range(len(associated)):
        est, gt = associated.positions[i], associated.truth.positions[i]
        row = [
            int(associated.stamps_ns[i]),
            *est,
            math.degrees(associated.yaw[i]),
            *gt,
            math.degrees(associated.truth.yaw[i]),
            err[i],
            heading[i],
        ]
        cells = [str(v) if isinstance(v, int) else ("" if not math.isfinite(v) else f"{v:.6f}") for v in row]
        writer.writerow([*cells, GroundTruthStatus(int(associated.truth.status[i])).name.lower()])
    return buffer.getvalue()


def _definitions() -> str:
    recall = ", ".join(f"({d:g} m, {a:g}°)" for d, a in RECALL_THRESHOLDS)
    return "\n".join(
        [
            "- **Continuity**: frames with an estimate / camera frames.",
            "- **Errors** are horizontal (2D) distances to the RTK ground truth interpolated at the "
            "estimate's stamp, over the localized frames that have ground truth; estimates outside the "
            "ground truth's span or inside its gaps are counted separately and not evaluated.",
            "- **Ratio in [a m, b m]**: share of evaluated frames with error in [a, b) m.",
            "- **Heading error**: absolute wrapped difference of ENU yaw, over frames where both the "
            "estimate and the ground truth have a heading.",
            f"- **Recall** at {recall}: frames within both thresholds, as a share of all camera frames "
            "(metrics.json also gives the share of evaluated frames with a heading).",
            f"- **Inside {COVERAGE_PROBABILITY:.0%} ellipse**: share of evaluated frames whose true position "
            "lies inside the published 95% covariance ellipse (chi-square, 2 dof); ~95% when calibrated.",
            "- **NEES**: mean normalized estimation error squared; ~2 (position) and ~3 (pose) when "
            "calibrated.",
            "- **p95 / p99 / Max Error**: percentiles and maximum of the position error.",
            "- **Cross-track / Along-track**: the position error in the frame of the true heading (as "
            "Autoware's localization evaluators split it): lateral (positive left) and along the direction "
            "of travel (positive ahead); RMSE and 95th percentile of the absolute value.",
            f"- **Recall (d m)** at {', '.join(f'{d:g} m' for d in RECALL_DISTANCES_M)}: frames with "
            "position error within d, as a share of all camera frames.",
            f"- **RPE per second / per metre**: RMSE over pairs of evaluated frames {RPE_WINDOW_S:g} s apart "
            f"(or {RPE_WINDOW_M:g} m apart along the true track; at most 1.5 times that) of the difference "
            "between the estimated and the true displacement, divided by the time (m/s) or by the distance "
            "(m per m).",
            f"- **Outside own {100 * INTEGRITY_PROBABILITY:g}% ellipse** (false confidence): share of "
            "evaluated frames with a covariance whose error lies outside their own 99.9% ellipse; ~0.1% when "
            "calibrated.",
            "- **Time to first fix**: first camera frame to first estimate. **Longest gap**: longest time "
            "without an estimate after the first fix. **Losses**: stretches of more than "
            f"{LOSS_AFTER_S:g} s without a good estimate (none, or error > {LOSS_ERROR_M:g} m); "
            "**re-acquisition**: from the last good estimate before a loss to the next good one.",
        ]
    )


def render_markdown(
    result: EvaluationResult,
    *,
    title: str,
    references: Sequence[PaperReference],
    metadata: Mapping[str, Any],
    diagnostics: Mapping[str, Any] | None,
    tum_pairs: Sequence[str],
) -> str:
    """The text of ``report.md``."""
    lines = [f"# {title}", ""]
    if metadata:
        lines += ["| | |", "|:---|:---|", *(f"| {k} | {v} |" for k, v in metadata.items()), ""]
    gt = result.ground_truth
    start, end = gt.span_ns
    lines += [
        f"Ground truth: {len(gt)} RTK samples over {(end - start) * 1e-9:.1f} s, heading from "
        f"{gt.heading_source}; stamps more than {gt.max_gap_s:g} s from a sample are not evaluated.",
        "",
        "## Results",
        "",
        format_markdown_table(result.metrics, references),
    ]
    flagged = [m for m in result.metrics if m.n_outside_ground_truth or m.n_duplicates]
    if flagged:
        lines.append("Estimates not evaluated:")
        lines.append("")
        for m in flagged:
            reasons = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in m.outside_ground_truth.items() if v)
            extra = f"; {m.n_duplicates} duplicate stamps (last kept)" if m.n_duplicates else ""
            lines.append(
                f"- {display_name(m.source)}: {m.n_outside_ground_truth} ({reasons or 'none'}){extra}"
            )
        lines.append("")
    lines += ["### Definitions", "", _definitions(), ""]
    lines += [
        "## Figures",
        "",
        "![Map: ground truth in green, estimates in red, panoramas in blue](figures/map.png)",
        "",
        "![Position and heading error over time](figures/error_over_time.png)",
        "",
        "![Error CDF per source](figures/error_cdf.png)",
        "",
        "![Cross- and along-track error against each source's own ±3σ](figures/error_sigma.png)",
        "",
        "![Estimates coloured by their position error](figures/error_map.png)",
        "",
    ]
    if diagnostics:
        lines += ["## Diagnostics", "", "```json", json.dumps(_json_ready(diagnostics), indent=2), "```", ""]
    lines += [
        "## Reproducing with evo",
        "",
        "Planar TUM trajectories (z = 0, docs/formats.md) of every source and of the ground truth at "
        "the evaluated stamps are in `tum/`; evo's APE (translation, no alignment) equals the errors "
        "above with `tum/groundtruth.tum` or with the source's own `tum/<source>.groundtruth.tum`:",
        "",
        "```sh",
        *(f"evo_ape tum tum/groundtruth.tum tum/{name}.tum" for name in tum_pairs),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_report(
    out_dir: str | Path,
    result: EvaluationResult,
    *,
    panoramas_xy: npt.ArrayLike | None = None,
    references: Sequence[PaperReference] = PAPER_REFERENCES,
    title: str = "geoloc_ros localization report",
    metadata: Mapping[str, Any] | None = None,
    diagnostics: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ReportFiles:
    """Write the whole report into ``out_dir`` atomically (refused if it exists unless ``overwrite``).

    ``panoramas_xy``: ``(N, 2)`` ENU positions of the map's panoramas; ``metadata``: key/value lines
    for the report's head (bag, map, commit, ...); ``diagnostics``: e.g. the fusion filter's counters.
    """
    target = Path(out_dir)
    meta = dict(metadata or {})
    with atomic_directory(target, overwrite=overwrite) as tmp:
        (tmp / "figures").mkdir()
        (tmp / "tum").mkdir()
        (tmp / "errors").mkdir()
        figures = {
            "map.png": plot_map(result.ground_truth, result.sources, panoramas_xy),
            "error_over_time.png": plot_error_over_time(result.ground_truth, result.sources),
            "error_cdf.png": plot_error_cdf(result.sources),
            "error_sigma.png": plot_error_sigma(result.ground_truth, result.sources),
            "error_map.png": plot_error_map(result.ground_truth, result.sources),
        }
        for name, png in figures.items():
            (tmp / "figures" / name).write_bytes(png)

        tum_files = ["groundtruth.tum"]
        (tmp / "tum" / "groundtruth.tum").write_text(
            format_tum(_ground_truth_tum(result.sources.values())), encoding="utf-8"
        )
        pairs, csv_files = [], []
        for source, evaluation in result.sources.items():
            name = _safe_name(source)
            estimate, truth = _source_tum_pair(evaluation.associated)
            (tmp / "tum" / f"{name}.tum").write_text(format_tum(estimate), encoding="utf-8")
            (tmp / "tum" / f"{name}.groundtruth.tum").write_text(format_tum(truth), encoding="utf-8")
            tum_files += [f"{name}.tum", f"{name}.groundtruth.tum"]
            pairs.append(name)
            (tmp / "errors" / f"{name}.csv").write_text(_errors_csv(evaluation.associated), encoding="utf-8")
            csv_files.append(f"{name}.csv")

        table = format_text_table(result.metrics, references)
        (tmp / "table.txt").write_text(table, encoding="utf-8")
        document = {
            "title": title,
            "metadata": meta,
            **result.as_dict(),
            "references": {r.name: r.cells for r in references},
            "diagnostics": dict(diagnostics or {}),
        }
        (tmp / "metrics.json").write_text(
            json.dumps(_json_ready(document), indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        markdown = render_markdown(
            result,
            title=title,
            references=references,
            metadata=meta,
            diagnostics=diagnostics,
            tum_pairs=pairs,
        )
        (tmp / "report.md").write_text(markdown, encoding="utf-8")
    logger.info("report written to %s", target)
    return ReportFiles(
        target,
        target / "report.md",
        target / "metrics.json",
        target / "table.txt",
        [target / "figures" / n for n in figures],
        [target / "tum" / n for n in tum_files],
        [target / "errors" / n for n in csv_files],
    )
