"""The fusion filter's clock and the time checks every measurement passes before it is fused.

Robot_localization and Autoware's ekf_localizer reject measurements whose stamps are implausible
instead of letting them move the filter's time; this module does the same, so one bad stamp can
never stop or poison the fused output:

- **Filter clock**: the newest stamp of a measurement that passed these checks. A stamp more than
  ``forward_jump_reset_s`` ahead of it is rejected (``future``); one more than
  ``backward_jump_reset_s`` behind the newest of its own source (or, for a source not yet seen since
  the last reset, more than ``forward_jump_reset_s`` behind the clock) is rejected (``too_old``).
  Such measurements are never adopted as the newest time. They are *jump candidates*: only
  ``time_jump_confirmations`` consecutive candidates that agree with each other (within
  ``forward_jump_reset_s``), with no measurement on the current timeline in between, confirm a jump
  of the data's time (a bag loop, a replay skipping ahead); then the filter resets and the last one
  starts the new timeline. A single stale pose or a single GPS fix stamped a day ahead is therefore
  rejected and forgotten, and each source recovers with its next sane stamp.
- **Node clock** (live only, when a ``clock`` is given and reads > 0): a stamp more than
  ``clock_max_future_s`` ahead of it is rejected (``future``), one more than ``clock_max_delay_s``
  behind it is rejected (``too_old``). A plausible measurement confirms a jump at once when the
  filter clock is ahead of the node clock (time went back under ``use_sim_time``) or the
  measurement is more than ``forward_jump_reset_s`` ahead of the filter (nothing was fused for that
  long). A stamp behind the filter clock is never confirmed by the node clock alone: a stale pose
  is plausible for the clock, but not newer than what the filter already has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.measurements import RejectReason

RESET_TIME_BACKWARDS = "time_backwards"
RESET_TIME_FORWARD = "time_forward"


@dataclass(frozen=True)
class TimeVerdict:
    """``reject`` (a :class:`RejectReason` value) or ``reset`` (a reset reason), or neither: fuse it."""

    reject: str | None = None
    reset: str | None = None
    detail: str = ""


@dataclass
class FilterClock:
    """The newest plausible stamps (overall and per source) and the pending jump candidates."""

    config: FusionConfig
    clock: Callable[[], int | None] | None = None
    newest_ns: int | None = None
    newest_by_source: dict[str, int] = field(default_factory=dict)
    _candidates: list[int] = field(default_factory=list)

    def clear(self) -> None:
        self.newest_ns = None
        self.newest_by_source = {}
        self._candidates = []

    def adopt(self, source: str, stamp_ns: int) -> None:
        """Record a measurement that passed :meth:`check` and entered the filter."""
        self.newest_ns = stamp_ns if self.newest_ns is None else max(self.newest_ns, stamp_ns)
        self.newest_by_source[source] = max(self.newest_by_source.get(source, stamp_ns), stamp_ns)

    def check(self, source: str, stamp_ns: int) -> TimeVerdict:
        now = self.clock() if self.clock is not None else None
        clock_known = now is not None and now > 0
        if clock_known:
            assert now is not None
            verdict = self._check_node_clock(stamp_ns, now)
            if verdict is not None:
                return verdict
        if self.newest_ns is None:
            return TimeVerdict()
        cfg = self.config
        ahead_s = (stamp_ns - self.newest_ns) * 1e-9
        own = self.newest_by_source.get(source)
        if ahead_s > cfg.forward_jump_reset_s:
            if clock_known:  # plausible for the node clock: the filter is what fell behind
                return TimeVerdict(reset=RESET_TIME_FORWARD, detail="the node clock confirms the jump")
            return self._candidate(stamp_ns, RESET_TIME_FORWARD, RejectReason.FUTURE.value, ahead_s)
        if own is not None and (own - stamp_ns) * 1e-9 > cfg.backward_jump_reset_s:
            return self._candidate(stamp_ns, RESET_TIME_BACKWARDS, RejectReason.TOO_OLD.value, ahead_s)
        if own is None and -ahead_s > cfg.forward_jump_reset_s:
            return self._candidate(stamp_ns, RESET_TIME_BACKWARDS, RejectReason.TOO_OLD.value, ahead_s)
        self._candidates = []  # the current timeline is alive
        if -ahead_s > cfg.history_s:
            return TimeVerdict(
                reject=RejectReason.TOO_OLD.value,
                detail=f"{-ahead_s:.3f} s older than the newest measurement (history {cfg.history_s} s)",
            )
        return TimeVerdict()

    def _check_node_clock(self, stamp_ns: int, now_ns: int) -> TimeVerdict | None:
        cfg = self.config
        ahead_s = (stamp_ns - now_ns) * 1e-9
        if ahead_s > cfg.clock_max_future_s:
            return TimeVerdict(
                reject=RejectReason.FUTURE.value,
                detail=f"stamp {ahead_s:.3f} s ahead of the node clock (limit {cfg.clock_max_future_s} s)",
            )
        if -ahead_s > cfg.clock_max_delay_s:
            return TimeVerdict(
                reject=RejectReason.TOO_OLD.value,
                detail=f"stamp {-ahead_s:.3f} s behind the node clock (limit {cfg.clock_max_delay_s} s)",
            )
        if self.newest_ns is not None:
            filter_ahead_s = (self.newest_ns - now_ns) * 1e-9
            if filter_ahead_s > cfg.clock_max_future_s:
                return TimeVerdict(reset=RESET_TIME_BACKWARDS, detail="the node clock went back")
        return None

    def _candidate(self, stamp_ns: int, direction: str, reason: str, ahead_s: float) -> TimeVerdict:
        """A stamp off the current timeline: rejected, unless it confirms a jump."""
        cfg = self.config
        window_ns = round(cfg.forward_jump_reset_s * 1e9)
        if not self._candidates or abs(stamp_ns - self._candidates[-1]) > window_ns:
            self._candidates = []
        self._candidates.append(stamp_ns)
        if len(self._candidates) >= cfg.time_jump_confirmations:
            self._candidates = []
            return TimeVerdict(reset=direction, detail=f"time jump of {ahead_s:.3f} s confirmed")
        return TimeVerdict(
            reject=reason,
            detail=(
                f"stamp {ahead_s:+.3f} s from the filter clock: off the timeline "
                f"({len(self._candidates)}/{cfg.time_jump_confirmations} to confirm a time jump)"
            ),
        )
