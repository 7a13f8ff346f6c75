import numpy as np
import pytest

from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.staging import KeyedSample, StagingArea, panorama_sample_keys


def batches(seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (f"pano{i}", rng.integers(0, 256, size=(int(rng.integers(0, 300)), 128), dtype=np.uint8))
        for i in range(12)
    ]


def sample_of(order: list[int], capacity: int) -> np.ndarray:
    data = batches(1)
    sample = KeyedSample(capacity)
    for i in order:
        pano_id, rows = data[i]
        sample.add(panorama_sample_keys(5, pano_id, len(rows)), rows)
    return sample.sample()


def test_sample_does_not_depend_on_completion_order():
    forward = sample_of(list(range(12)), 500)
    shuffled = sample_of([int(i) for i in np.random.default_rng(2).permutation(12)], 500)
    assert forward.shape == (500, 128)
    assert np.array_equal(forward, shuffled)


def test_sample_keeps_everything_below_capacity_and_is_a_subset():
    data = batches(1)
    total = sum(len(rows) for _, rows in data)
    everything = sample_of(list(range(12)), 10 * total)
    assert len(everything) == total
    pool = {row.tobytes() for _, rows in data for row in rows}
    assert all(row.tobytes() in pool for row in sample_of(list(range(12)), 100))


def test_keys_depend_on_seed_and_panorama():
    a = panorama_sample_keys(0, "p1", 50)
    assert np.array_equal(a, panorama_sample_keys(0, "p1", 50))
    assert not np.array_equal(a, panorama_sample_keys(1, "p1", 50))
    assert not np.array_equal(a, panorama_sample_keys(0, "p2", 50))
    assert np.all((a >= 0) & (a < 1))


def test_bad_inputs():
    with pytest.raises(MapBuildError, match="capacity"):
        KeyedSample(0)
    with pytest.raises(MapBuildError, match="3 keys for 2 rows"):
        KeyedSample(5).add(np.zeros(3), np.zeros((2, 128), np.uint8))


def test_staging_area_is_removed_even_on_error(tmp_path):
    target = tmp_path / "bundle"
    with pytest.raises(RuntimeError), StagingArea(target) as staging:
        (staging.root / "x").write_bytes(b"1")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
