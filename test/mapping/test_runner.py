import math

import numpy as np
import pytest

from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.runner import DaskRunner, InProcessRunner, open_runner


def test_in_process_runner_names_the_failed_task():
    runner = InProcessRunner()
    assert dict(runner.imap_unordered(math.sqrt, [("a", (4.0,)), ("b", (9.0,))], 1)) == {"a": 2.0, "b": 3.0}
    with pytest.raises(MapBuildError, match=r"panorama 'x': ValueError"):
        list(runner.imap_unordered(math.sqrt, [("panorama 'x'", (-1.0,))], 1))
    with pytest.raises(MapBuildError, match="workers must be >= 1"), open_runner(workers=0):
        pass


def test_local_dask_cluster_runs_tasks_on_loopback_and_shuts_down():
    with open_runner(workers=2) as runner:
        assert isinstance(runner, DaskRunner) and runner.n_workers == 2
        client = runner.client
        info = client.scheduler_info(n_workers=-1)
        addresses = [info["address"], *info["workers"]]
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        tasks = [(f"t{i}", (float(i * i),)) for i in range(7)]
        # Bounded in flight: 2 at a time, results in completion order.
        assert dict(runner.imap_unordered(math.sqrt, tasks, 2)) == {f"t{i}": float(i) for i in range(7)}
        big = np.ones(400_000)  # scattered to a worker rather than embedded in the task
        assert dict(runner.imap_unordered(np.sum, [("big", (big,))], 2)) == {"big": 400_000.0}
        shared = runner.share(np.arange(5.0))
        assert dict(runner.imap_unordered(np.sum, [("s", (shared,))], 2)) == {"s": 10.0}
        with pytest.raises(MapBuildError, match=r"bad: ValueError: math domain error"):
            list(runner.imap_unordered(math.sqrt, [("ok", (1.0,)), ("bad", (-1.0,))], 2))
    assert client.status == "closed"
