"""Outcome bookkeeping of the fusion filter: what happened to each measurement, counted per source.

A measurement's outcome can change when a late, earlier-stamped measurement is inserted before it
and it is re-applied (:mod:`geoloc_ros.fusion.history`): :class:`OutcomeCounters` then takes back
its old outcome and counts the new one, so the counters always describe final fates.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STATUS_ACCEPTED = "accepted"
STATUS_INITIALIZED = "initialized"
STATUS_REJECTED = "rejected"

REINIT_DIVERGENCE = "divergence"


@dataclass(frozen=True)
class UpdateResult:
    """What happened to one measurement when it was added.

    ``status`` is ``accepted``, ``initialized`` or ``rejected`` (then ``reason`` is a
    :class:`~geoloc_ros.fusion.measurements.RejectReason` value). ``initialized`` with reason
    ``divergence`` is a re-initialization. ``reset`` names a reset this measurement triggered
    before it was processed. ``replayed`` counts later measurements re-applied after it.
    The outcome can still change if an earlier-stamped measurement arrives later;
    :class:`FusionDiagnostics` always holds the final counts.
    """

    source: str
    stamp_ns: int
    status: str
    reason: str | None = None
    nis: float | None = None
    reset: str | None = None
    replayed: int = 0
    detail: str = ""


@dataclass
class SourceCounters:
    """Per-source counts; ``rejected`` maps a reason to its count."""

    received: int = 0
    accepted: int = 0
    initialized: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_nis: float | None = None
    last_stamp_ns: int | None = None
    nis_sum: float = 0.0
    nis_count: int = 0

    @property
    def mean_nis(self) -> float | None:
        """Mean normalized innovation squared of accepted updates (≈ their dof when consistent)."""
        return self.nis_sum / self.nis_count if self.nis_count else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "initialized": self.initialized,
            "rejected": dict(sorted(self.rejected.items())),
            "last_nis": self.last_nis,
            "mean_nis": self.mean_nis,
            "last_stamp_ns": self.last_stamp_ns,
        }


@dataclass(frozen=True)
class FusionDiagnostics:
    """A snapshot of the filter's health, for ``/diagnostics`` and reports."""

    initialized: bool
    newest_stamp_ns: int | None
    resets: int
    reset_reasons: dict[str, int]
    reinitializations: int
    buffered: int
    sources: dict[str, SourceCounters]

    def as_dict(self) -> dict[str, Any]:
        return {
            "initialized": self.initialized,
            "newest_stamp_ns": self.newest_stamp_ns,
            "resets": self.resets,
            "reset_reasons": dict(self.reset_reasons),
            "reinitializations": self.reinitializations,
            "buffered": self.buffered,
            "sources": {name: c.as_dict() for name, c in sorted(self.sources.items())},
        }


@dataclass(frozen=True)
class Outcome:
    """The fate of one measurement on one application (``reason`` for rejections and re-inits)."""

    status: str
    reason: str | None = None
    nis: float | None = None
    detail: str = ""


class OutcomeCounters:
    """Per-source :class:`SourceCounters` and the count of re-initializations."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceCounters] = {}
        self.reinitializations = 0

    def source(self, name: str) -> SourceCounters:
        return self.sources.setdefault(name, SourceCounters())

    def snapshot(self) -> dict[str, SourceCounters]:
        return {name: copy.deepcopy(c) for name, c in self.sources.items()}

    def count(self, source: str, stamp_ns: int, outcome: Outcome) -> None:
        c = self.source(source)
        if outcome.status == STATUS_ACCEPTED:
            c.accepted += 1
            if outcome.nis is not None:
                c.nis_sum += outcome.nis
                c.nis_count += 1
        elif outcome.status == STATUS_INITIALIZED:
            c.initialized += 1
            if outcome.reason == REINIT_DIVERGENCE:
                self.reinitializations += 1
        else:
            c.rejected[outcome.reason or "unknown"] += 1
        if outcome.nis is not None:
            c.last_nis = outcome.nis
        c.last_stamp_ns = stamp_ns

    def uncount(self, source: str, outcome: Outcome) -> None:
        c = self.source(source)
        if outcome.status == STATUS_ACCEPTED:
            c.accepted -= 1
            if outcome.nis is not None:
                c.nis_sum -= outcome.nis
                c.nis_count -= 1
        elif outcome.status == STATUS_INITIALIZED:
            c.initialized -= 1
            if outcome.reason == REINIT_DIVERGENCE:
                self.reinitializations -= 1
        else:
            reason = outcome.reason or "unknown"
            c.rejected[reason] -= 1
            if c.rejected[reason] == 0:
                del c.rejected[reason]
