"""Map prefetch along the direction of travel, off the frame path.

On a city-scale bundle the localizer holds only the tiles around the vehicle
(:class:`~geoloc_ros.mapping.paging.TilePagedIndex` for retrieval, per-view reads of the features).
After each frame the localizer knows where the vehicle is and, while tracking, its velocity:
:class:`MapPrefetcher` then loads, on a thread of its own, the index tiles around the vehicle and
around where it will be in ``lookahead_s`` (so that a re-localization there finds them resident),
and asks the kernel to read the feature rows of those tiles ahead (``POSIX_FADV_WILLNEED``), so the
views the vehicle drives towards come from the page cache rather than the disk.

Bounded: one request waits at most (a newer one replaces it: the thread never falls behind the
vehicle), and what is loaded is bounded by the paged index's ``max_tiles``.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import numpy.typing as npt

from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.paging import TilePagedIndex, tiles_ahead

logger = logging.getLogger(__name__)


class MapPrefetcher:
    """A daemon thread that prefetches the tiles around the vehicle and ahead of it (see the module
    docstring). ``index``: the localizer's paged index; ``bundle``: its map (feature rows)."""

    def __init__(self, bundle: MapBundle, index: TilePagedIndex, radius_m: float, lookahead_s: float) -> None:
        self.bundle = bundle
        self.index = index
        self.radius_m = float(radius_m)
        self.lookahead_s = float(lookahead_s)
        self.requests = 0
        self.done = 0
        self.errors = 0
        self._pending: tuple[np.ndarray, np.ndarray | None] | None = None
        self._busy = False
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="map-prefetch", daemon=True)
        self._thread.start()

    def request(self, xy: npt.ArrayLike, velocity_xy: npt.ArrayLike | None = None) -> None:
        """Prefetch around ``xy`` (ENU) and, with a velocity (m/s), ahead of it; returns at once."""
        centre = np.asarray(xy, dtype=np.float64).reshape(-1)[:2].copy()
        velocity = None if velocity_xy is None else np.asarray(velocity_xy, np.float64).reshape(-1)[:2].copy()
        with self._condition:
            self._pending = (centre, velocity)
            self.requests += 1
            self._condition.notify()

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until every request so far is served (tests, benchmarks); False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._pending is None and not self._busy, timeout_s)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                assert self._pending is not None
                centre, velocity = self._pending
                self._pending = None
                self._busy = True
            try:
                self.prefetch(centre, velocity)
            except Exception:  # a failed prefetch only costs the read later, on the frame path
                logger.exception("map prefetch around %s failed", centre.tolist())
                self.errors += 1
            with self._condition:
                self._busy = False
                self.done += 1
                self._condition.notify_all()

    def prefetch(self, centre: np.ndarray, velocity: np.ndarray | None) -> list[int]:
        """The work of one request, on the calling thread: the index tiles (around and ahead), then
        the feature rows of the same tiles; the tiles, nearest first."""
        tiles = tiles_ahead(self.bundle.tiles, centre, self.radius_m, velocity, self.lookahead_s)
        self.index.prefetch(centre, self.radius_m, velocity, self.lookahead_s)
        self.bundle.prefetch_features(tiles)
        return tiles
