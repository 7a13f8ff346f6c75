from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from geoloc_ros.posenet.checkpoint import (
    CHECKPOINT_FORMAT,
    load_trained_model,
    read_checkpoint,
    save_checkpoint,
)
from geoloc_ros.posenet.errors import CheckpointError
from geoloc_ros.posenet.preprocess import resize_for_network, to_network_tensor
from geoloc_ros.posenet.targets import decode_outputs, pose_errors
from geoloc_ros.posenet.train import TrainResult


def test_checkpoint_roundtrip_and_format_checks(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    payload = {"config": {}, "model": {"w": torch.ones(2)}, "normalization": {}, "camera": {}, "epoch": 4}
    save_checkpoint(path, payload)
    data = read_checkpoint(path)
    assert data["format"] == CHECKPOINT_FORMAT and data["epoch"] == 4
    torch.testing.assert_close(data["model"]["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.pt: cannot read checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a geoloc_ros PoseNet checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        read_checkpoint(tmp_path / "future.pt")
    save_checkpoint(tmp_path / "partial.pt", {"config": {}})
    with pytest.raises(CheckpointError, match="lacks 'model'"):
        read_checkpoint(tmp_path / "partial.pt")


def test_restored_best_model_reproduces_its_validation_error(
    synth: SimpleNamespace, tiny_run: TrainResult
) -> None:
    """Checkpoint -> rebuilt network -> the validation median the training run recorded."""
    restored = load_trained_model(tiny_run.best_checkpoint)
    assert not restored.model.training and restored.model_config.backbone == "tiny"
    views = synth.make_views()  # the views tiny_run trained on
    val_groups = set(json.loads((tiny_run.run_dir / "split.json").read_text())["val_groups"])
    val = [i for i in range(len(views)) if views.group(i) in val_groups]
    spec = restored.model_config.input_spec
    x = to_network_tensor([resize_for_network(views.image(i), spec) for i in val], spec)
    with torch.no_grad():
        pose, log_var = (t.numpy() for t in restored.model(torch.from_numpy(x)))
    prediction = decode_outputs(pose, log_var, restored.normalization)
    position_error, _ = pose_errors(prediction, [views.pose(i) for i in val])
    recorded = tiny_run.history[tiny_run.best_epoch - 1]["val_median_position_m"]
    assert float(np.median(position_error)) == pytest.approx(recorded, abs=1e-4)
