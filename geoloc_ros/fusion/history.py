"""The fusion filter's measurement history: stamp order, re-application after late arrivals, pruning.

Entries are kept in ``(stamp, source, arrival)`` order with the state right after each. A
measurement that arrives late is inserted in stamp order and every later one is re-applied from
the state before it, so results do not depend on arrival order; the outcome counters are corrected
for every re-applied entry. Entries older than ``history_s`` before the newest stamp are pruned
into :attr:`MeasurementHistory.base`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from geoloc_ros.fusion.ekf import FilterState
from geoloc_ros.fusion.measurements import Observation
from geoloc_ros.fusion.outcomes import STATUS_REJECTED, Outcome, OutcomeCounters

Apply = Callable[[FilterState, Observation], tuple[FilterState, Outcome]]


@dataclass
class HistoryEntry:
    """A buffered measurement, its latest outcome and the state right after it."""

    key: tuple[int, str, int]
    observation: Observation
    outcome: Outcome
    state_after: FilterState


class MeasurementHistory:
    """Stamp-ordered measurements and the filter states after them (see the module docstring)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.entries: list[HistoryEntry] = []
        self.base = FilterState(stamp_ns=-(2**62))
        # Newest stamp covered by ``base`` (the last pruned entry); None: nothing pruned yet.
        self.base_key_ns: int | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def latest_state(self) -> FilterState:
        return self.entries[-1].state_after if self.entries else self.base

    def state_for(self, stamp_ns: int) -> FilterState | None:
        """State after every measurement stamped at or before ``stamp_ns`` (None: too old)."""
        keys = [e.key[0] for e in self.entries]
        i = bisect.bisect_right(keys, stamp_ns)
        if i > 0:
            return self.entries[i - 1].state_after
        if self.base_key_ns is not None and stamp_ns < self.base_key_ns:
            return None
        return self.base

    def insert(
        self, key: tuple[int, str, int], obs: Observation, apply: Apply, counters: OutcomeCounters
    ) -> int:
        """Insert ``obs`` at ``key`` and (re-)apply it and every later entry; returns its index."""
        index = bisect.bisect_right([e.key for e in self.entries], key)
        state = self.entries[index - 1].state_after if index > 0 else self.base
        placeholder = Outcome(STATUS_REJECTED)
        self.entries.insert(index, HistoryEntry(key, obs, placeholder, state))
        self._replay_from(index, index, apply, counters)
        return index

    def _replay_from(self, index: int, new_index: int, apply: Apply, counters: OutcomeCounters) -> None:
        state = self.entries[index - 1].state_after if index > 0 else self.base
        for j in range(index, len(self.entries)):
            entry = self.entries[j]
            state, outcome = apply(state, entry.observation)
            if j != new_index:
                counters.uncount(entry.observation.source, entry.outcome)
            counters.count(entry.observation.source, entry.observation.stamp_ns, outcome)
            entry.outcome = outcome
            entry.state_after = state

    def prune(self, horizon_ns: int) -> None:
        """Fold the entries stamped before ``horizon_ns`` into :attr:`base`."""
        drop = 0
        while drop < len(self.entries) and self.entries[drop].key[0] < horizon_ns:
            drop += 1
        if drop:
            self.base = self.entries[drop - 1].state_after
            self.base_key_ns = self.entries[drop - 1].key[0]
            del self.entries[:drop]
