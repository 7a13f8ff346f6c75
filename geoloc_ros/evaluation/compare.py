"""Compare two evaluation reports figure by figure (``geoloc evaluate --compare A B``).

Reads each report's ``metrics.json`` (:mod:`geoloc_ros.evaluation.report`), flattens every source's
figures to dotted names (``availability.longest_gap_s``, ``recall.0.5m_5deg.of_frames``,
``error_bins.0-1m``) and gives, per source and figure, A, B and B - A (``None`` where either side
has no number). Sources or figures present in only one report are kept with the other side
``None``, so nothing disappears silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoloc_ros.evaluation.errors import EvaluationError

Number = int | float


@dataclass(frozen=True)
class FigureDifference:
    figure: str
    a: Number | None
    b: Number | None

    @property
    def difference(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return float(self.b - self.a)


@dataclass(frozen=True)
class ReportComparison:
    report_a: str
    report_b: str
    metadata: dict[str, tuple[Any, Any]]
    sources: dict[str, list[FigureDifference]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "report_a": self.report_a,
            "report_b": self.report_b,
            "metadata": {k: {"a": a, "b": b} for k, (a, b) in self.metadata.items()},
            "sources": {
                source: {d.figure: {"a": d.a, "b": d.b, "difference": d.difference} for d in rows}
                for source, rows in self.sources.items()
            },
        }


def load_metrics(report: str | Path) -> dict[str, Any]:
    """A report's ``metrics.json`` (``report`` is the report directory or the file itself)."""
    path = Path(report)
    if path.is_dir():
        path = path / "metrics.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no metrics.json (is {report} a report of geoloc evaluate?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read the report's metrics: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("sources"), dict):
        raise EvaluationError(f"{path}: not a report's metrics.json (no 'sources' object)")
    return document


def _recall_key(entry: Mapping[str, Any]) -> str:
    return f"{entry['position_m']:g}m_{entry['heading_deg']:g}deg"


def flatten_figures(value: Any, prefix: str = "") -> dict[str, Number | None]:
    """Numbers (and nulls) of a nested figure dict under dotted names; text and flags are left out."""
    out: dict[str, Number | None] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(flatten_figures(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            is_recall = isinstance(item, Mapping) and {"position_m", "heading_deg"} <= set(item)
            if is_recall:  # thresholds go into the name
                thresholds = {"position_m", "heading_deg"}
                item_figures = {k: v for k, v in item.items() if k not in thresholds}
                out.update(flatten_figures(item_figures, f"{prefix}{_recall_key(item)}."))
            else:
                out.update(flatten_figures(item, f"{prefix}{index}."))
    elif value is None:
        out[prefix[:-1]] = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix[:-1]] = value if math.isfinite(value) else None
    return out


def compare_reports(report_a: str | Path, report_b: str | Path) -> ReportComparison:
    """Every figure of every source of two reports side by side."""
    a, b = load_metrics(report_a), load_metrics(report_b)
    meta_a, meta_b = a.get("metadata", {}) or {}, b.get("metadata", {}) or {}
    metadata = {k: (meta_a.get(k), meta_b.get(k)) for k in [*meta_a, *(k for k in meta_b if k not in meta_a)]}
    sources: dict[str, list[FigureDifference]] = {}
    names = [*a["sources"], *(s for s in b["sources"] if s not in a["sources"])]
    for name in names:
        fa = flatten_figures(a["sources"].get(name, {}))
        fb = flatten_figures(b["sources"].get(name, {}))
        figures = [*fa, *(f for f in fb if f not in fa)]
        sources[name] = [FigureDifference(f, fa.get(f), fb.get(f)) for f in figures if f != "source"]
    return ReportComparison(str(report_a), str(report_b), metadata, sources)


def _cell(value: Number | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _signed(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:+.4g}"


def format_comparison_markdown(comparison: ReportComparison) -> str:
    """Markdown: the two reports' metadata, then one table per source (figure, A, B, B - A)."""
    lines = [
        "# Report comparison",
        "",
        f"A: `{comparison.report_a}`  ",
        f"B: `{comparison.report_b}`",
        "",
    ]
    if comparison.metadata:
        lines += ["| | A | B |", "|:---|:---|:---|"]
        lines += [
            f"| {k} | {a if a is not None else '—'} | {b if b is not None else '—'} |"
            for k, (a, b) in comparison.metadata.items()
        ]
        lines.append("")
    for source, rows in comparison.sources.items():
        changed = sum(1 for d in rows if d.a != d.b)
        lines += [f"## {source} ({changed} of {len(rows)} figures differ)", ""]
        lines += ["| Figure | A | B | B − A |", "|:---|---:|---:|---:|"]
        lines += [f"| {d.figure} | {_cell(d.a)} | {_cell(d.b)} | {_signed(d.difference)} |" for d in rows]
        lines.append("")
    return "\n".join(lines)
