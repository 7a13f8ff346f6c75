from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
import yaml
from click.testing import CliRunner

from geoloc_ros.cli.main import cli, main
from geoloc_ros.config import validate_mapping
from geoloc_ros.posenet.dataset import write_view_folder
from geoloc_ros.posenet.train import TrainConfig


def test_default_config_is_a_valid_train_config() -> None:
    result = CliRunner().invoke(cli, ["posenet", "default-config"])
    assert result.exit_code == 0, result.output
    config = validate_mapping(TrainConfig, yaml.safe_load(result.output), "default-config")
    assert config == TrainConfig()


def test_train_export_info_predict(
    synth: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    views = write_view_folder(synth.make_views(n_groups=3, views_per_group=4), tmp_path / "views")
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(synth.tiny_config(epochs=2).model_dump(mode="json")))
    run = tmp_path / "run"
    args = ["posenet", "train", "--views", str(views), "--out", str(run), "--config", str(config_path)]
    assert main([*args, "--epochs", "1", "--threads", "1"]) == 0
    assert TrainConfig.load(run / "config.yaml").epochs == 1
    assert main(args) == 2  # the run exists: a one-line error, exit status 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args[:6], "--resume", "--epochs", "3"]) == 2  # --resume takes the stored config
    assert main([*args[:6], "--resume", "--init-from", str(run)]) == 2
    more = tmp_path / "more"
    assert main([*args[:4], "--out", str(more), *args[6:], "--epochs", "1", "--init-from", str(run)]) == 0
    summary = json.loads((more / "summary.json").read_text())
    assert summary["init_from"] == {"checkpoint": str((run / "checkpoints/best.pt").resolve()), "epoch": 1}
    model = tmp_path / "model.onnx"
    assert main(["posenet", "export", str(run), "--out", str(model), "--fp16"]) == 0
    assert "fp16" in capsys.readouterr().out
    assert main(["posenet", "info", str(model)]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp16"
    assert main(["posenet", "evaluate", str(model), "--views", str(views), "--providers", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["views"] == 12 and summary["median_position_m"] >= 0.0
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), synth.make_views(n_groups=1, views_per_group=1).image(0))
    assert main(["posenet", "predict", str(model), str(image), "--providers", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["image"] == str(image) and line["provider"] == "CPUExecutionProvider"
    assert {"x", "y", "yaw_deg", "compass_deg", "position_std_m", "yaw_std_deg"} <= set(line)


def test_train_on_a_map_bundle_with_synthesis_then_evaluate_on_the_drive(
    synth: SimpleNamespace,
    tiny_map_dir: Path,
    tiny_sim_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = synth.tiny_config(epochs=1).model_dump(mode="json")
    config["data"] = {"synthesis": {"enabled": True, "views_per_metre": 0.2, "views_per_panorama": 1}}
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    args = ["posenet", "train", "--map", str(tiny_map_dir), "--out", str(run), "--config", str(config_path)]
    assert main([*args, "--threads", "1", "--time-budget", "600"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    data = summary["data"]
    assert data["synthetic_views"] > 0 and data["bundle_views"] > 0
    assert data["n_views"] == data["synthetic_views"] + data["bundle_views"]
    assert (run / "synthetic_views" / "views.jsonl").is_file()
    capsys.readouterr()
    model = tmp_path / "model.onnx"
    assert main(["posenet", "export", str(run), "--out", str(model)]) == 0
    out = tmp_path / "eval"
    drive = str(tiny_sim_dir / "drive")
    assert (
        main(["posenet", "evaluate", str(model), "--bag", drive, "--out", str(out), "--providers", "cpu"])
        == 0
    )
    table = capsys.readouterr().out
    for label in ("PoseNet", "Temporal PoseNet", "Smoothed PoseNet", "Seed PoseNet", "Median Error"):
        assert label in table
    assert "Heading Error (median)" in table and "Inside 95% ellipse" in table
    assert (out / "estimates.jsonl").is_file() and (out / "report" / "metrics.json").is_file()
    # The output is protected; --json prints the headline figures.
    assert main(["posenet", "evaluate", str(model), "--bag", drive, "--out", str(out)]) == 2
    capsys.readouterr()
    evaluate = ["posenet", "evaluate", str(model), "--bag", drive, "--map", str(tiny_map_dir)]
    assert main([*evaluate, "--json", "--max-frames", "10"]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(printed[printed.index("\n{") + 1 :])
    assert figures["frames"] == 10 and figures["posenet"]["median_error_m"] >= 0
    assert set(figures) >= {"posenet", "posenet_temporal", "posenet_smoothed"}


def test_train_and_evaluate_need_exactly_one_input(tmp_path: Path, tiny_map_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["posenet", "train", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "exactly one of --map BUNDLE and --views DIR" in result.output
    both = ["--map", str(tiny_map_dir), "--views", str(tiny_map_dir)]
    result = runner.invoke(cli, ["posenet", "train", *both, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "exactly one" in result.output
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    result = runner.invoke(cli, ["posenet", "evaluate", str(model)])
    assert result.exit_code == 2 and "exactly one of --bag DRIVE and --views DIR" in result.output


def test_evaluate_refuses_a_model_of_another_map(
    tiny_posenet_model: Path, tiny_map_dir: Path, tiny_sim_dir: Path, tmp_path: Path
) -> None:
    """--map is the map the model was trained on: another one is refused before any inference."""
    import onnx

    from geoloc_ros.posenet.modelinfo import METADATA_KEY

    proto = onnx.load(str(tiny_posenet_model))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    entry.value = json.dumps({**json.loads(entry.value), "map_id": "0123456789abcdef"})
    other = tmp_path / "other_map.onnx"
    onnx.save(proto, str(other))
    drive = str(tiny_sim_dir / "drive")
    result = CliRunner().invoke(
        cli, ["posenet", "evaluate", str(other), "--bag", drive, "--map", str(tiny_map_dir)]
    )
    assert result.exit_code != 0
    assert "0123456789abcdef vs" in str(result.exception) and str(tiny_map_dir) in str(result.exception)
