"""Opening a run's training views (geoloc_ros/posenet/sources.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoloc_ros.errors import GeolocError
from geoloc_ros.posenet.sources import training_source
from geoloc_ros.posenet.train_config import TrainConfig


@pytest.mark.parametrize("given", ["map_dir", "views_dir"])
def test_a_wrong_input_leaves_no_run_directory(tmp_path: Path, given: str) -> None:
    not_an_input = tmp_path / "notes"
    not_an_input.mkdir()
    (not_an_input / "readme.txt").write_text("not a bundle, not a view folder")
    run = tmp_path / "run"
    with pytest.raises(GeolocError, match="notes"):
        training_source(TrainConfig(), run, **{given: not_an_input})
    assert not run.exists()
