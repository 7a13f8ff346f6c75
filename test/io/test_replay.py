import pytest

from geoloc_ros.io.replay import ReplayPacer


def test_real_time_and_scaled_pacing():
    pacer = ReplayPacer(rate=2.0)
    pacer.restart(10_000_000_000, wall_now_s=100.0)
    assert pacer.due_at(10_000_000_000) == 100.0
    assert pacer.due_at(12_000_000_000) == pytest.approx(101.0)  # 2 s of bag at x2 = 1 s of wall time
    assert pacer.bag_time_at(100.5) == 11_000_000_000
    pacer.restart(10_000_000_000, wall_now_s=200.0)  # a loop
    assert pacer.due_at(11_000_000_000) == pytest.approx(200.5)


def test_as_fast_as_possible_and_errors():
    pacer = ReplayPacer(rate=0.0)
    pacer.restart(5, wall_now_s=1.0)
    assert pacer.due_at(10**12) == 1.0
    with pytest.raises(ValueError, match="rate"):
        ReplayPacer(rate=-1.0)
    with pytest.raises(RuntimeError, match="restart"):
        ReplayPacer().due_at(0)
