"""Pacing of a bag replay: when (on the wall clock) each recorded message is due.

``rate`` scales time (1.0 = real time, 2.0 = twice as fast); ``rate=0`` replays as fast as possible.
The clock restarts at every loop, so replayed stamps jump back at a loop, like ``ros2 bag play --loop``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class ReplayPacer:
    rate: float = 1.0
    _bag_start_ns: int | None = field(default=None, init=False)
    _wall_start_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate) or self.rate < 0:
            raise ValueError(f"replay rate must be a finite number >= 0, got {self.rate}")

    def restart(self, bag_time_ns: int, wall_now_s: float) -> None:
        """Anchor ``bag_time_ns`` at ``wall_now_s`` (call at the start and at every loop)."""
        self._bag_start_ns = int(bag_time_ns)
        self._wall_start_s = wall_now_s

    def due_at(self, bag_time_ns: int) -> float:
        """Wall-clock time (same clock as ``restart``) at which ``bag_time_ns`` is due."""
        if self._bag_start_ns is None:
            raise RuntimeError("ReplayPacer.restart() must be called first")
        if self.rate == 0:
            return self._wall_start_s
        return self._wall_start_s + (bag_time_ns - self._bag_start_ns) * 1e-9 / self.rate

    def bag_time_at(self, wall_now_s: float) -> int:
        """The bag time corresponding to ``wall_now_s`` (for /clock between messages)."""
        if self._bag_start_ns is None:
            raise RuntimeError("ReplayPacer.restart() must be called first")
        if self.rate == 0:
            return self._bag_start_ns
        return self._bag_start_ns + int((wall_now_s - self._wall_start_s) * self.rate * 1e9)
