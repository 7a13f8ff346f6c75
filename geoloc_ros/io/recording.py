"""What a live run published, written like an offline run (``geoloc stack --record DIR``).

Layout (one directory, written atomically)::

    estimates.jsonl            every estimate of every source (geoloc_ros.io.estimates), by stamp
    trajectory_<source>.tum    one planar TUM trajectory per source (docs/formats.md)
    summary.json               per source: count, first / last stamp, span and rate; wall time

``estimates.jsonl`` and the TUM files are those ``geoloc localize`` writes (there for one source,
``trajectory.tum``), so a live run is evaluated like an offline one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.io.atomic import atomic_directory, atomic_write_json, atomic_write_text
from geoloc_ros.io.estimates import write_estimates
from geoloc_ros.io.tum import estimates_to_tum, format_tum


def _ordered(estimates: Sequence[PoseEstimate]) -> list[PoseEstimate]:
    """By stamp, one per stamp (the last received), as the TUM format needs."""
    by_stamp = {e.stamp_ns: e for e in estimates}
    return [by_stamp[s] for s in sorted(by_stamp)]


def recording_summary(
    estimates_by_source: Mapping[str, Sequence[PoseEstimate]], wall_s: float
) -> dict[str, Any]:
    """Per source: how many estimates, over which stamps, at which rate."""
    sources: dict[str, Any] = {}
    for source, estimates in estimates_by_source.items():
        stamps = sorted(e.stamp_ns for e in estimates)
        span_s = (stamps[-1] - stamps[0]) * 1e-9 if stamps else 0.0
        sources[source] = {
            "estimates": len(stamps),
            "first_stamp_ns": stamps[0] if stamps else None,
            "last_stamp_ns": stamps[-1] if stamps else None,
            "span_s": round(span_s, 3),
            "rate_hz": round((len(stamps) - 1) / span_s, 2) if span_s > 0 else None,
        }
    return {"wall_s": round(wall_s, 2), "sources": sources}


def summary_text(summary: Mapping[str, Any]) -> str:
    lines = [f"published in {summary['wall_s']:.1f} s:"]
    for source, figures in summary["sources"].items():
        rate = f", {figures['rate_hz']:.1f} Hz" if figures["rate_hz"] is not None else ""
        lines.append(f"  {source:<18} {figures['estimates']:>6} poses over {figures['span_s']:.1f} s{rate}")
    if not summary["sources"]:
        lines.append("  no pose topics")
    return "\n".join(lines)


def write_recording(
    out_dir: str | Path,
    estimates_by_source: Mapping[str, Sequence[PoseEstimate]],
    summary: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write the layout above into ``out_dir`` atomically; returns ``out_dir``."""
    target = Path(out_dir)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        ordered = {source: _ordered(estimates) for source, estimates in estimates_by_source.items()}
        everything = sorted((e for es in ordered.values() for e in es), key=lambda e: (e.stamp_ns, e.source))
        write_estimates(tmp / "estimates.jsonl", everything)
        for source, estimates in ordered.items():
            text = format_tum(estimates_to_tum(estimates, planar=True)) if estimates else "# no pose\n"
            atomic_write_text(tmp / f"trajectory_{source}.tum", text)
        atomic_write_json(tmp / "summary.json", dict(summary))
    return target
