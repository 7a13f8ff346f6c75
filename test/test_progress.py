from __future__ import annotations

import logging

import pytest

from geoloc_ros.progress import INTERVAL_ENV, interval_s, progress_bar


def _progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "geoloc_ros.progress"]


def test_off_a_terminal_progress_is_logged_with_rate_and_remaining_time(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    caplog.set_level(logging.INFO)
    assert list(progress_bar(range(5), desc="localize", unit="frame")) == [0, 1, 2, 3, 4]
    lines = _progress_lines(caplog)
    assert lines[0].startswith("localize:   0% 0/5")
    assert lines[-1].startswith("localize: 100% 5/5") and "frame/s" in lines[-1] and "<" in lines[-1]
    caplog.clear()
    with progress_bar(desc="unknown total", unit="view") as bar:
        bar.update(3)
    assert _progress_lines(caplog)[-1].startswith("unknown total: 3 [")


def test_quiet_or_disabled_progress_says_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    caplog.set_level(logging.WARNING)
    assert sum(progress_bar(range(3), desc="quiet")) == 3
    caplog.set_level(logging.INFO)
    assert sum(progress_bar(range(3), desc="off", disable=True)) == 3
    assert _progress_lines(caplog) == []


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert interval_s() == 10.0
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert interval_s() == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "often")
    assert interval_s() == 10.0
