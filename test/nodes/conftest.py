"""Helpers for tests that run real rclpy nodes in this process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def ros_context() -> Iterator[object]:
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


def _spin_until(executor, condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=0.02)
    return condition()


@pytest.fixture
def spin_until() -> Callable[..., bool]:
    """``spin_until(executor, condition, timeout_s=20)``: spin until ``condition()`` holds (or time out)."""
    return _spin_until
