"""Map prefetch: off the frame path, around the vehicle and ahead along its direction of travel."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.io.drive import DriveBag
from geoloc_ros.localize.config import LocalizerConfig
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.localize.prefetch import MapPrefetcher
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.paging import TilePagedIndex
from geoloc_ros.mapping.tiles import TileTable


class _Recorder:
    """Stands in for the paged index and the bundle: records what is prefetched, and from where."""

    def __init__(self) -> None:
        self.tiles = TileTable.from_sorted_positions(
            np.array([[x, y] for x in (50.0, 150.0, 250.0) for y in (50.0, 150.0)]), 100.0
        )
        self.index_calls: list[tuple[np.ndarray, np.ndarray | None, float, str]] = []
        self.feature_tiles: list[list[int]] = []

    def prefetch(self, xy, radius_m, velocity_xy=None, lookahead_s=10.0):  # the paged index's
        self.index_calls.append((np.asarray(xy), velocity_xy, lookahead_s, threading.current_thread().name))
        return []

    def prefetch_features(self, tiles):  # the bundle's
        self.feature_tiles.append(list(tiles))


def test_the_prefetcher_works_on_its_own_thread_and_looks_ahead():
    recorder = _Recorder()
    prefetcher = MapPrefetcher(recorder, recorder, radius_m=20.0, lookahead_s=10.0)  # type: ignore[arg-type]
    prefetcher.request([50.0, 50.0], [10.0, 0.0])
    assert prefetcher.wait_idle(10.0)
    ((xy, velocity, lookahead, thread),) = recorder.index_calls
    assert np.allclose(xy, [50.0, 50.0]) and np.allclose(velocity, [10.0, 0.0]) and lookahead == 10.0
    assert thread == "map-prefetch" != threading.current_thread().name
    # The feature rows of the tile it is in and of the tile 100 m ahead (east), nearest first.
    assert [tuple(recorder.tiles.keys[t]) for t in recorder.feature_tiles[0]] == [(0, 0), (1, 0)]
    prefetcher.close()
    assert not prefetcher._thread.is_alive()


@pytest.fixture(scope="module")
def tiny(tiny_sim_dir: Path, tiny_map_dir: Path):
    return MapBundle.open(tiny_map_dir, verify="sizes"), DriveBag(tiny_sim_dir / "drive")


def test_the_localizer_prefetches_along_the_direction_of_travel(tiny):
    bundle, drive = tiny
    config = LocalizerConfig.model_validate(
        {
            "features": {"fast": False},
            "rejection": {"min_inliers": 15},
            "retrieval": {"paged_tiles": 4, "prefetch_lookahead_s": 5.0},
        }
    )
    localizer = Localizer(bundle, config, drive.mounting, drive.camera)
    assert isinstance(localizer.retriever.index, TilePagedIndex) and localizer.prefetcher is not None
    calls: list[tuple[np.ndarray, np.ndarray | None, str]] = []
    serve = localizer.prefetcher.prefetch

    def recording(centre, velocity):
        calls.append((centre, velocity, threading.current_thread().name))
        return serve(centre, velocity)

    localizer.prefetcher.prefetch = recording  # type: ignore[method-assign]
    poses = []
    for frame in drive.frames(max_frames=8):
        result = localizer.localize(frame.image, frame.stamp_ns)
        assert localizer.prefetcher.wait_idle(10.0)
        if result.estimate is not None:
            poses.append(result.estimate.pose.translation[:2])
            # Around the pose just found, on the prefetch thread, not the frame's.
            assert np.allclose(calls[-1][0], poses[-1]) and calls[-1][2] == "map-prefetch"
    assert len(poses) >= 4
    with_velocity = [(c, v) for c, v, _ in calls if v is not None]
    assert with_velocity, "no prefetch along the direction of travel"
    travel = poses[-1] - poses[0]
    for _, velocity in with_velocity:
        # Along the direction of travel (the motion prior's velocity).
        assert float(np.dot(velocity, travel)) > 0.9 * np.linalg.norm(velocity) * np.linalg.norm(travel)
    # The tiles around the vehicle and ahead of it were loaded by the prefetch, not by a query.
    index = localizer.retriever.index
    assert index.stats.loaded and set(index.stats.loaded) <= set(np.unique(bundle.views.tile).tolist())
    assert bundle.feature_columns.stats.prefetched
    localizer.close()
    assert localizer.prefetcher is None
