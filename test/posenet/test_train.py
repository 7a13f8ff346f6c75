from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.posenet.checkpoint import load_trained_model, read_checkpoint
from geoloc_ros.posenet.errors import CheckpointError
from geoloc_ros.posenet.export import export_onnx
from geoloc_ros.posenet.train import TrainConfig, TrainResult, train, variance_scale


def test_tiny_run_reduces_the_loss_and_fills_the_run_directory(
    synth: SimpleNamespace, tiny_run: TrainResult
) -> None:
    history = tiny_run.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    run = tiny_run.run_dir
    for name in ("run.json", "config.yaml", "split.json", "metrics.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    assert tiny_run.best_checkpoint.is_file() and tiny_run.last_checkpoint.is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    split = json.loads((run / "split.json").read_text())
    assert split["val_groups"] and not set(split["val_groups"]) & set(split["train_groups"])
    assert TrainConfig.load(run / "config.yaml") == synth.tiny_config()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["completed_epochs"] == 3 and summary["best_epoch"] == tiny_run.best_epoch
    assert "val_median_position_m" in history[-1] and history[-1]["val_median_position_m"] >= 0
    assert history[-1]["val_position_variance_scale"] > 0 and history[-1]["val_rotation_variance_scale"] > 0
    restored = load_trained_model(tiny_run.best_checkpoint)
    assert restored.epoch == tiny_run.best_epoch and restored.normalization.dof == 3


class Interrupt(Exception):
    pass


def test_resume_after_interrupt_reaches_the_same_weights(synth: SimpleNamespace, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    views = synth.make_views(n_groups=4, views_per_group=6)
    config = synth.tiny_config(epochs=3)
    straight = train(views, tmp_path / "straight", config)

    def stop_after_second(metrics: dict) -> None:
        if metrics["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(views, tmp_path / "resumed", config, epoch_callback=stop_after_second)
    assert read_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["epoch"] == 2
    resumed = train(views, tmp_path / "resumed", resume=True)
    assert resumed.completed_epochs == 3
    a = read_checkpoint(straight.last_checkpoint)
    b = read_checkpoint(resumed.last_checkpoint)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert len((tmp_path / "resumed/metrics.jsonl").read_text().splitlines()) == 3


def test_run_directory_protection(synth: SimpleNamespace, tmp_path: Path) -> None:
    views = synth.make_views(n_groups=3, views_per_group=4)
    config = synth.tiny_config(epochs=1)
    train(views, tmp_path / "run", config)
    with pytest.raises(OutputExistsError, match="already exists"):
        train(views, tmp_path / "run", config)
    with pytest.raises(CheckpointError, match=r"differs from the run's config.yaml in \['epochs'\]"):
        train(views, tmp_path / "run", synth.tiny_config(epochs=2), resume=True)
    train(views, tmp_path / "run", synth.tiny_config(epochs=2), overwrite=True)
    assert yaml.safe_load((tmp_path / "run/config.yaml").read_text())["epochs"] == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a PoseNet run"):
        train(views, tmp_path / "other", config, overwrite=True)
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(views, tmp_path / "other", resume=True)


def test_on_the_fly_augmentation_6dof_and_time_budget(synth: SimpleNamespace, tmp_path: Path) -> None:
    views = synth.make_views(n_groups=3, views_per_group=6)
    config = synth.tiny_config(
        epochs=3, cache_copies=0, model={**synth.tiny_config().model.model_dump(), "dof": 6}
    )
    result = train(views, tmp_path / "run", config, time_budget_s=1e-9)
    assert result.stopped_early and result.completed_epochs == 1
    assert "val_median_rotation_deg" in result.history[0]
    assert json.loads((tmp_path / "run/summary.json").read_text())["stopped_early"] is True


def test_variance_scale_is_the_median_ratio_to_the_chi_square_median() -> None:
    rng = np.random.default_rng(0)
    errors = rng.normal(0.0, 2.0, size=(20000, 2))  # true per-axis variance 4
    residual = np.linalg.norm(errors, axis=1)
    assert variance_scale(residual, np.full(20000, np.log(4.0)), 2) == pytest.approx(1.0, rel=0.05)
    assert variance_scale(residual, np.full(20000, np.log(1.0)), 2) == pytest.approx(4.0, rel=0.05)
    # Gross failures in 10% of the samples barely move the robust factor.
    residual[:2000] = 500.0
    assert variance_scale(residual, np.full(20000, np.log(4.0)), 2) < 1.3


def test_spatial_head_with_every_stage_frozen_trains_and_calibrates_on_held_out_cells(
    synth: SimpleNamespace, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    views = synth.make_views(n_groups=6, views_per_group=8)
    tiny = synth.tiny_config().model.model_dump()
    config = synth.tiny_config(
        epochs=4,
        val_fraction=0.0,
        model={**tiny, "head": "spatial", "head_channels": 8, "freeze_stages": 4},
        calibration={"enabled": True, "cell_m": 4.0, "holdout_fraction": 0.3},
    )
    result = train(views, tmp_path / "run", config)
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    last = history[-1]
    assert last["calibration_views_held_out"] > 0
    assert last["calibration_views_fit"] + last["calibration_views_held_out"] == len(views)
    assert last["calibration_position_variance_scale"] > 0
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["seconds_calibration"] > 0
    exported = export_onnx(result.run_dir, tmp_path / "m.onnx")
    # ONNX matches PyTorch for the spatial head too (export compares them on random inputs).
    assert exported.max_abs_diff_pose < 1e-4 and exported.max_abs_diff_log_var < 1e-4
    assert exported.variance_scale == pytest.approx(
        (last["calibration_position_variance_scale"], last["calibration_rotation_variance_scale"])
    )


def test_onnxruntime_prefix_computes_the_frozen_features_of_the_model(synth: SimpleNamespace) -> None:
    from geoloc_ros.posenet.feature_cache import PrefixRunner
    from geoloc_ros.posenet.model import build_model

    torch.manual_seed(0)
    model = build_model(
        synth.tiny_config(model={**synth.tiny_config().model.model_dump(), "freeze_stages": 2}).model
    )
    model.eval()
    x = torch.randn(3, 3, 48, 64)
    ort_runner = PrefixRunner(model, "onnxruntime", torch.device("cpu"))
    torch_runner = PrefixRunner(model, "torch", torch.device("cpu"))
    assert (ort_runner.engine, torch_runner.engine) == ("onnxruntime", "torch")
    a, b = ort_runner(x), torch_runner(x)
    assert a.dtype == b.dtype == torch.float16 and a.shape == b.shape
    torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=2e-3)
    assert PrefixRunner(model, "auto", torch.device("cpu")).engine == "onnxruntime"


def test_feature_cache_on_disk_is_reused_and_gives_the_same_training(
    synth: SimpleNamespace, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    views = synth.make_views(n_groups=3, views_per_group=6)
    config = synth.tiny_config(epochs=2)
    built = train(views, tmp_path / "a", config, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    reused = train(views, tmp_path / "b", config, cache_dir=tmp_path / "cache")
    assert files[0].stat().st_mtime_ns == stamp  # read, not rebuilt
    a, b = read_checkpoint(built.last_checkpoint), read_checkpoint(reused.last_checkpoint)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    # Another augmentation gives other features: another file.
    other = synth.tiny_config(epochs=1, augment={"yaw_deg": 1.0})
    train(views, tmp_path / "c", other, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_init_from_starts_at_the_runs_weights_and_refuses_what_does_not_fit(
    synth: SimpleNamespace, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    views = synth.make_views(n_groups=3, views_per_group=6)
    source = train(views, tmp_path / "source", synth.tiny_config(epochs=3))
    start = read_checkpoint(source.best_checkpoint)
    # A learning rate near zero: the new run's weights stay those it started from.
    still = synth.tiny_config(epochs=1, optim={"lr": 1e-12, "warmup_epochs": 0.0})
    more = train(views, tmp_path / "more", still, init_from=source.run_dir)
    weights = read_checkpoint(more.last_checkpoint)["model"]
    fresh = train(views, tmp_path / "fresh", still)
    fresh_weights = read_checkpoint(fresh.last_checkpoint)["model"]
    head = [key for key in weights if key.startswith("head.") and weights[key].is_floating_point()]
    assert head
    for key in head:
        torch.testing.assert_close(weights[key], start["model"][key], rtol=0, atol=1e-6, msg=key)
    assert any(not torch.allclose(fresh_weights[key], start["model"][key]) for key in head)
    summary = json.loads((tmp_path / "more/summary.json").read_text())
    assert summary["init_from"] == {
        "checkpoint": str(source.best_checkpoint.resolve()),
        "epoch": source.best_epoch,
    }
    # Resuming the initialised run keeps where it came from.
    assert read_checkpoint(more.last_checkpoint)["init_from"] == summary["init_from"]
    # Where the source run's first weights came from (here: none, from scratch) need not match: the
    # checkpoint replaces them, and a weights file named for ImageNet is never read.
    imagenet = {**still.model.model_dump(), "pretrained": True, "weights_path": str(tmp_path / "none.pth")}
    other_start = still.model_copy(update={"model": type(still.model).model_validate(imagenet)})
    train(views, tmp_path / "other_start", other_start, init_from=source.run_dir)

    with pytest.raises(CheckpointError, match=r"model section differs .* in \['fc_units'\]"):
        other_model = {**synth.tiny_config().model.model_dump(), "fc_units": 32}
        train(views, tmp_path / "a", synth.tiny_config(model=other_model), init_from=source.last_checkpoint)
    with pytest.raises(CheckpointError, match="trained on other views"):
        train(
            synth.make_views(n_groups=4, views_per_group=6), tmp_path / "b", still, init_from=source.run_dir
        )
    calibrated = synth.tiny_config(calibration={"enabled": True})
    with pytest.raises(CheckpointError, match=r"calibration\.enabled"):
        train(views, tmp_path / "c", calibrated, init_from=source.run_dir)
    with pytest.raises(CheckpointError, match="drop init_from"):
        train(views, tmp_path / "more", resume=True, init_from=source.run_dir)
    with pytest.raises(CheckpointError, match="not found"):
        train(views, tmp_path / "d", still, init_from=tmp_path / "fresh/checkpoints/none.pt")
    assert not any((tmp_path / name).exists() for name in ("b", "c", "d"))
