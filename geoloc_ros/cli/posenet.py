"""``geoloc posenet``: train, export, inspect and run the PoseNet regressor.

Training and export import torch lazily (inside the commands), so ``predict`` and ``info`` work on
a vehicle without torch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from geoloc_ros.cli.common import (
    bag_option,
    echo_summary,
    json_option,
    map_option,
    output_options,
    renamed_option,
)
from geoloc_ros.config import dump_yaml, read_yaml

logger = logging.getLogger(__name__)


@click.group("posenet")
def posenet_group() -> None:
    """Train, export and run the PoseNet regressor."""


def _load_config_mapping(path: str | None) -> dict[str, Any]:
    from geoloc_ros.errors import ConfigError

    if path is None:
        return {}
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


_providers_option = click.option(
    "--providers",
    default="auto",
    show_default=True,
    help="onnxruntime execution providers: auto, tensorrt, cuda, cpu (or a comma-separated order).",
)


def _providers(text: str) -> str | list[str]:
    """``--providers`` as the predictor takes it: one name, or a comma-separated order."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    return names if len(names) > 1 else (names[0] if names else "auto")


@posenet_group.command("train")
@renamed_option("--workers", "--loader-workers", "loader_workers", type=click.IntRange(min=0))
@map_option("built with view images, its views and poses are the training set")
@click.option(
    "--views",
    "views_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Or a view folder: views.jsonl + camera.yaml + images (see geoloc_ros.posenet.dataset).",
)
@click.option(
    "--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory."
)
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TrainConfig YAML."
)
@click.option(
    "--panoramas",
    "panoramas_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Panorama set the bundle was built from, for synthesis (default: the one its manifest names).",
)
@click.option(
    "--synthetic-views",
    "synthetic_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Drive-height views already rendered by 'geoloc posenet synthesize' with the config's "
    "synthesis settings (default: render them into RUN/synthetic_views).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override epochs.")
@click.option("--seed", type=int, help="Override the seed.")
@click.option(
    "--backbone",
    type=click.Choice(["efficientnet_lite0", "mobilenet_v2", "efficientnet_b0", "tiny"]),
    help="Override model.backbone.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Backbone checkpoint (torchvision layout for mobilenet_v2/efficientnet_b0).",
)
@click.option("--from-scratch", is_flag=True, help="No ImageNet initialisation.")
@click.option("--dof", type=click.Choice(["3", "6"]), help="3 = x, y, heading; 6 = position + quaternion.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="torch device (auto: CUDA when available).",
)
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (default: torch's choice).")
@click.option(
    "--loader-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Data-loading processes of torch's DataLoader (0: in this process; view synthesis uses every "
    "core unless the config's data.synthesis.workers says otherwise).",
)
@click.option(
    "--time-budget",
    "time_budget_s",
    type=click.FloatRange(min=1.0),
    help="Seconds: stop after the epoch during which this much time has passed (resume continues).",
)
@click.option("--time-budget-min", type=click.FloatRange(min=0.1), help="The same, in minutes.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the feature cache here (reused by runs with the same frozen prefix, input, augmentation, "
    "seed and views: trying heads and schedules then skips the caching).",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, path_type=Path),
    help="Start from this run's weights (a run directory's best checkpoint, or a .pt file) instead of "
    "ImageNet: train on for more epochs or fine-tune with --config's schedule (same model and views).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run in --out and start over.")
@json_option
def train_command(
    map_dir: Path | None,
    views_dir: Path | None,
    run_dir: Path,
    config_path: str | None,
    panoramas_dir: Path | None,
    synthetic_dir: Path | None,
    epochs: int | None,
    seed: int | None,
    backbone: str | None,
    weights: str | None,
    from_scratch: bool,
    dof: str | None,
    device: str,
    threads: int | None,
    loader_workers: int,
    time_budget_s: float | None,
    time_budget_min: float | None,
    cache_dir: Path | None,
    init_from: Path | None,
    resume: bool,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Train a PoseNet on a map bundle (--map) or a view folder (--views) into the run directory --out."""
    from geoloc_ros.posenet.sources import training_source
    from geoloc_ros.posenet.train import config_from_mapping, load_run_config, train

    if (map_dir is None) == (views_dir is None):
        raise click.UsageError("give exactly one of --map BUNDLE and --views DIR")
    if views_dir is not None and (panoramas_dir is not None or synthetic_dir is not None):
        raise click.UsageError("--panoramas and --synthetic-views go with --map (view synthesis)")
    if time_budget_s is not None and time_budget_min is not None:
        raise click.UsageError("give --time-budget (seconds) or --time-budget-min, not both")
    overrides = {
        "--config": config_path,
        "--epochs": epochs,
        "--seed": seed,
        "--backbone": backbone,
        "--weights": weights,
        "--from-scratch": from_scratch or None,
        "--dof": dof,
        "--init-from": init_from,
    }
    config = None
    if resume:
        given = [name for name, value in overrides.items() if value is not None]
        if given:
            raise click.UsageError(f"--resume uses the run's stored config; drop {', '.join(given)}")
    else:
        data = _load_config_mapping(config_path)
        if epochs is not None:
            data["epochs"] = epochs
        if seed is not None:
            data["seed"] = seed
        model = dict(data.get("model") or {})
        if backbone is not None:
            model["backbone"] = backbone
        if weights is not None:
            model["weights_path"] = str(Path(weights).resolve())
            model["pretrained"] = True
        if from_scratch:
            model["pretrained"] = False
            model["weights_path"] = None
        if dof is not None:
            model["dof"] = int(dof)
        if model:
            data["model"] = model
        config = config_from_mapping(data, config_path or "command line")
    effective = config if config is not None else load_run_config(run_dir)
    prepared = training_source(
        effective,
        run_dir,
        map_dir=map_dir,
        views_dir=views_dir,
        panoramas_dir=panoramas_dir,
        synthetic_dir=synthetic_dir,
        resume=resume,
        overwrite=overwrite,
    )
    if time_budget_min is not None:
        time_budget_s = time_budget_min * 60.0
    result = train(
        prepared.source,
        run_dir,
        config,
        device=device,
        num_threads=threads,
        workers=loader_workers,
        resume=resume,
        overwrite=False,  # training_source prepared (or cleared, with --overwrite) the run directory
        time_budget_s=time_budget_s,
        map_origin=prepared.map_origin,
        data_info=prepared.info,
        cache_dir=cache_dir,
        init_from=init_from,
    )
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    text = f"run {result.run_dir}: {result.completed_epochs} epochs, best epoch {result.best_epoch}"
    if "val_median_position_m" in best:
        text += (
            f"\nbest validation: median {best['val_median_position_m']:.2f} m, "
            f"{best['val_median_rotation_deg']:.2f} deg"
        )
    summary = {
        "run_dir": result.run_dir,
        "completed_epochs": result.completed_epochs,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "best": best,
    }
    echo_summary(summary, text, as_json)


@posenet_group.command("export")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@output_options("The .onnx file to write.", name="out_path", file_okay=True, inputs=("run",))
@click.option("--fp16", is_flag=True, help="Float16 weights and arithmetic (float32 inputs and outputs).")
@click.option(
    "--fp16-weights",
    is_flag=True,
    help="Float16 weights, float32 arithmetic: half the file at FP32 speed on a CPU (the shipped models).",
)
@click.option(
    "--checkpoint",
    "which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Which checkpoint of a run directory.",
)
@click.option(
    "--opset", type=click.IntRange(min=17), default=18, show_default=True, help="ONNX opset version."
)
@json_option
def export_command(
    run: Path,
    out_path: Path,
    fp16: bool,
    fp16_weights: bool,
    which: str,
    opset: int,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Export RUN (a run directory or a checkpoint file) to ONNX, checked against PyTorch."""
    from geoloc_ros.posenet.export import export_onnx

    if fp16 and fp16_weights:
        raise click.UsageError("give --fp16 (weights and arithmetic) or --fp16-weights, not both")
    report = export_onnx(
        run, out_path, fp16=fp16, fp16_weights=fp16_weights, opset=opset, which=which, overwrite=overwrite
    )
    text = (
        f"wrote {report.path} ({report.precision}, opset {report.opset}, {report.size_bytes / 1e6:.2f} MB); "
        f"max |onnx - torch| = {max(report.max_abs_diff_pose, report.max_abs_diff_log_var):.2g} "
        f"(tolerance {report.tolerance:.2g}): {report.max_position_diff_m:.3f} m, "
        f"{report.max_heading_diff_deg:.3f} deg; variance scale (position, rotation) = "
        f"({report.variance_scale[0]:.2f}, {report.variance_scale[1]:.2f})"
    )
    echo_summary(report, text, as_json)


@posenet_group.command("info")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def info_command(model: Path) -> None:
    """Print the metadata of the exported MODEL (.onnx) as JSON."""
    from geoloc_ros.posenet.inference import read_model_info

    info = read_model_info(model)
    click.echo(json.dumps(info.metadata.model_dump(mode="json"), indent=2))


@posenet_group.command("predict")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_providers_option
@click.option(
    "--mounting",
    type=click.Path(exists=True, dir_okay=False),
    help="camera_mounting.yaml (default: camera body at base_link).",
)
@click.option(
    "--camera", "camera_path", type=click.Path(exists=True, dir_okay=False), help="Input camera YAML."
)
def predict_command(
    model: Path, images: tuple[Path, ...], providers: str, mounting: str | None, camera_path: str | None
) -> None:
    """Localize the image files IMAGES with the exported MODEL (.onnx); one JSON line per image (base_link
    pose in map, ENU yaw)."""
    import cv2
    import numpy as np

    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.geo.heading import enu_yaw_to_compass
    from geoloc_ros.geometry.frames import CameraMounting
    from geoloc_ros.posenet.errors import InferenceError
    from geoloc_ros.posenet.inference import PoseNetPredictor

    predictor = PoseNetPredictor(
        model,
        providers=_providers(providers),
        t_base_optical=CameraMounting.load(mounting).base_to_optical() if mounting else None,
        input_camera=PinholeCamera.load(camera_path) if camera_path else None,
    )
    for i, path in enumerate(images):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InferenceError(f"{path}: cannot read image")
        estimate = predictor.predict(image, i)
        cov = estimate.planar_covariance
        click.echo(
            json.dumps(
                {
                    "image": str(path),
                    "x": round(float(estimate.position[0]), 3),
                    "y": round(float(estimate.position[1]), 3),
                    "yaw_deg": round(float(np.rad2deg(estimate.yaw)), 2),
                    "compass_deg": round(float(enu_yaw_to_compass(estimate.yaw)), 2),
                    "position_std_m": round(float(np.sqrt(0.5 * (cov[0, 0] + cov[1, 1]))), 3),
                    "yaw_std_deg": round(float(np.rad2deg(np.sqrt(cov[2, 2]))), 2),
                    "provider": predictor.provider,
                }
            )
        )


@posenet_group.command("evaluate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@bag_option("accuracy against its RTK")
@click.option(
    "--views",
    "views_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Or a view folder with ground-truth camera poses (camera-pose errors, JSON summary).",
)
@map_option("the one the model was trained on (its origin; default: the origin stored in the model)")
@output_options(
    "Write estimates.jsonl (all three sources) and the evaluation report here.",
    required=False,
    inputs=("model", "bag", "views_dir", "map_dir"),
)
@click.option(
    "--temporal-config",
    type=click.Path(exists=True, dir_okay=False),
    help="TemporalConfig YAML of the causal filter and the smoother.",
)
@_providers_option
@click.option(
    "--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Frames per inference call."
)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="0: one per core.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Only the first N frames of the drive.")
@click.option("--json", "as_json", is_flag=True, help="Print the headline figures as JSON after the table.")
def evaluate_command(
    model: Path,
    bag: Path | None,
    views_dir: Path | None,
    map_dir: Path | None,
    out_dir: Path | None,
    temporal_config: str | None,
    providers: str,
    batch: int,
    threads: int,
    max_frames: int | None,
    as_json: bool,
    overwrite: bool,
) -> None:
    """Accuracy of the exported MODEL (.onnx): on a drive (--bag) per frame, causal-temporal and smoothed,
    against the RTK ground truth; or camera-pose errors on a view folder (--views)."""
    if (bag is None) == (views_dir is None):
        raise click.UsageError("give exactly one of --bag DRIVE and --views DIR")
    if views_dir is not None:
        if map_dir is not None or out_dir is not None or temporal_config is not None or max_frames:
            raise click.UsageError("--map, --out, --temporal-config and --max-frames go with --bag")
        _evaluate_views(model, views_dir, providers, batch)
        return
    assert bag is not None
    from geoloc_ros.config import load_yaml
    from geoloc_ros.evaluation.tables import PAPER_POSENET, format_text_table
    from geoloc_ros.pipelines.posenet_drive import evaluate_drive, write_drive_evaluation
    from geoloc_ros.posenet.temporal import TemporalConfig

    origin = None
    panoramas_xy = None
    if map_dir is not None:
        from geoloc_ros.mapping.map import MapBundle
        from geoloc_ros.posenet.inference import read_model_info

        bundle = MapBundle.open(map_dir, verify="sizes")
        # a model trained on another map is refused (names both), as the node and geoloc evaluate do
        logger.info(read_model_info(model).check_map(bundle.bundle_id, bundle.origin, str(map_dir)))
        origin, panoramas_xy = bundle.origin, bundle.panorama_positions[:, :2]
    temporal = load_yaml(temporal_config, TemporalConfig) if temporal_config else None
    evaluation = evaluate_drive(
        model,
        bag,
        map_origin=origin,
        temporal=temporal,
        providers=_providers(providers),
        batch_size=batch,
        max_frames=max_frames,
        intra_op_threads=threads,
    )
    click.echo(format_text_table(evaluation.result.metrics, (PAPER_POSENET,)), nl=False)
    if out_dir is not None:
        write_drive_evaluation(
            evaluation,
            out_dir,
            panoramas_xy=panoramas_xy,
            metadata={"model": str(model), "drive": str(bag), "map": str(map_dir or "")},
            overwrite=overwrite,
        )
        click.echo(f"wrote {out_dir}/estimates.jsonl and the report in {out_dir}/report")
    if as_json:
        click.echo(json.dumps(evaluation.summary(), indent=2))


def _evaluate_views(model: Path, views_dir: Path, providers: str, batch: int) -> None:
    import numpy as np

    from geoloc_ros.posenet.dataset import FolderViewSource
    from geoloc_ros.posenet.inference import PoseNetPredictor
    from geoloc_ros.posenet.targets import pose_errors
    from geoloc_ros.progress import progress_bar

    source = FolderViewSource(views_dir)
    predictor = PoseNetPredictor(model, providers=_providers(providers))
    position_errors, rotation_errors = [], []
    for start in progress_bar(range(0, len(source), batch), desc="evaluating", unit="batch"):
        indices = range(start, min(start + batch, len(source)))
        prediction = predictor.predict_camera([source.image(i) for i in indices])
        position, rotation = pose_errors(prediction, [source.pose(i) for i in indices])
        position_errors.append(position)
        rotation_errors.append(np.rad2deg(rotation))
    position_m, rotation_deg = np.concatenate(position_errors), np.concatenate(rotation_errors)
    summary = {
        "views": len(source),
        "median_position_m": float(np.median(position_m)),
        "mean_position_m": float(np.mean(position_m)),
        "median_rotation_deg": float(np.median(rotation_deg)),
        "within_2m_3deg": float(np.mean((position_m <= 2.0) & (rotation_deg <= 3.0))),
    }
    click.echo(json.dumps(summary, indent=2))


@posenet_group.command("synthesize")
@map_option("its panoramas' positions and map frame (and, by default, its panorama set)", required=True)
@output_options(
    "View folder to write (views.jsonl + camera.yaml + images).", inputs=("map_dir", "panoramas_dir")
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="TrainConfig YAML whose data.synthesis section is used (default: the default settings).",
)
@click.option(
    "--panoramas",
    "panoramas_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Panorama set the bundle was built from (default: the one its manifest names).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Render processes (default: every core).")
@json_option
def synthesize_command(
    map_dir: Path,
    out_dir: Path,
    config_path: str | None,
    panoramas_dir: Path | None,
    workers: int | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Render drive-height training views from a bundle's panoramas into a view folder."""
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.posenet.synthesis import synthesize_views
    from geoloc_ros.posenet.train import config_from_mapping

    config = config_from_mapping(_load_config_mapping(config_path), config_path or "defaults")
    bundle = MapBundle.open(map_dir, verify="sizes")
    summary = synthesize_views(
        bundle,
        out_dir,
        config.data.synthesis,
        panorama_dirs=[panoramas_dir] if panoramas_dir is not None else None,
        workers=workers,
        overwrite=overwrite,
    )
    text = (
        f"wrote {summary.written} of {summary.requested} views to {summary.directory} in "
        f"{summary.seconds:.0f} s ({summary.blocked} blocked, {summary.too_many_holes} with too many holes; "
        f"unknown pixels {100 * summary.mean_hole_ratio_first:.1f}% from one panorama, "
        f"{100 * summary.mean_hole_ratio_composited:.1f}% after the second)"
    )
    echo_summary(summary, text, as_json)


@posenet_group.command("default-config")
def default_config_command() -> None:
    """Print the default training configuration (YAML), a starting point for --config."""
    from geoloc_ros.posenet.train import TrainConfig

    click.echo(dump_yaml(TrainConfig()), nl=False)
