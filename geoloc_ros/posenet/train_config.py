"""The configuration of a PoseNet training run (stored as ``RUN/config.yaml``) and its run directory.

Run directory layout (see :mod:`geoloc_ros.posenet.train`)::

    RUN/
      run.json            marker (format + version): only such folders are resumed or overwritten
      config.yaml         the TrainConfig
      split.json, metrics.jsonl, checkpoints/last.pt, checkpoints/best.pt, summary.json
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from geoloc_ros.config import StrictModel, dump_yaml, load_yaml, validate_mapping
from geoloc_ros.io.atomic import OutputExistsError, atomic_write_json, atomic_write_text
from geoloc_ros.posenet.augment import AugmentConfig
from geoloc_ros.posenet.calibration import CalibrationConfig
from geoloc_ros.posenet.errors import CheckpointError
from geoloc_ros.posenet.losses import LossConfig
from geoloc_ros.posenet.model import ModelConfig
from geoloc_ros.posenet.synthesis import SynthesisConfig

RUN_MARKER = "run.json"
RUN_FORMAT = "geoloc_ros.posenet.run"
CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LAST_CHECKPOINT = "checkpoints/last.pt"
BEST_CHECKPOINT = "checkpoints/best.pt"


class OptimConfig(StrictModel):
    """AdamW with linear warm-up and cosine decay, per step."""

    lr: float = Field(1e-3, gt=0.0)
    # Learning rate of the trainable backbone stages relative to the head's.
    backbone_lr_scale: float = Field(0.3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    min_lr_ratio: float = Field(0.02, ge=0.0, le=1.0)
    grad_clip_norm: float = Field(5.0, gt=0.0)
    # Learning rate of the homoscedastic loss weights relative to the head's: Adam moves a
    # parameter by about lr per step, and these log weights must travel ~1-3 within a short run.
    loss_weight_lr_scale: float = Field(20.0, gt=0.0)


class DataConfig(StrictModel):
    """Which views train the network when it learns from a map bundle (``--map``)."""

    # The bundle's own rectified and virtual views (panorama centres, 2.5 m high).
    bundle_views: bool = True
    # Drive-height views rendered from the bundle's panorama set (geoloc_ros.posenet.synthesis).
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)


class TrainConfig(StrictModel):
    """Everything that determines a training run (stored as RUN/config.yaml)."""

    seed: int = 0
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=2)
    # Fraction of location groups (panoramas) held out for validation and checkpoint selection.
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    # Augmented copies per training view in the feature cache (copy 0 is clean); 0 = on the fly.
    cache_copies: int = Field(8, ge=0)
    # Refuse to build a cache larger than this (float16 features, all copies).
    cache_max_gb: float = Field(8.0, gt=0.0)
    # What computes the frozen prefix for the cache: onnxruntime is ~4x faster than eager torch
    # on a CPU for these depthwise convolutions ("auto": onnxruntime on CPU, torch on CUDA).
    cache_engine: Literal["auto", "torch", "onnxruntime"] = "auto"
    # Checkpoint selection: median position error (m) + this x median heading error (deg).
    selection_heading_weight: float = Field(1.0, ge=0.0)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    # Variance calibration on views held out by location (geoloc_ros.posenet.calibration).
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return load_yaml(path, cls)

    @property
    def uses_cache(self) -> bool:
        return self.cache_copies > 0 and self.model.freeze_stages > 0


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig of a run directory."""
    return load_yaml(Path(run_dir) / CONFIG_FILE, TrainConfig)


def config_from_mapping(data: dict[str, Any], source: str) -> TrainConfig:
    """Validate a mapping (e.g. a YAML config merged with CLI overrides) into a TrainConfig."""
    return validate_mapping(TrainConfig, data, source)


class RunFiles:
    def __init__(self, run_dir: Path) -> None:
        self.root = run_dir

    def path(self, name: str) -> Path:
        return self.root / name

    def is_run(self) -> bool:
        marker = self.root / RUN_MARKER
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
        except (OSError, json.JSONDecodeError):
            return False


def open_run_to_resume(run_dir: Path) -> RunFiles:
    files = RunFiles(run_dir)
    if not files.is_run():
        raise CheckpointError(f"{run_dir}: not a PoseNet run directory (no {RUN_MARKER}); cannot resume")
    if not files.path(LAST_CHECKPOINT).is_file():
        raise CheckpointError(f"{run_dir}: no {LAST_CHECKPOINT} to resume from")
    return files


def _is_unstarted_run(files: RunFiles, config: TrainConfig) -> bool:
    """A run directory made by :func:`prepare_run_dir` for this config that has not trained yet."""
    if not files.is_run() or files.path(LAST_CHECKPOINT).exists() or files.path(METRICS_FILE).exists():
        return False
    try:
        return load_yaml(files.path(CONFIG_FILE), TrainConfig) == config
    except Exception:  # a broken config.yaml is simply not this run
        return False


def prepare_run_dir(run_dir: str | Path, config: TrainConfig, overwrite: bool = False) -> Path:
    """Create the run directory (marker + config) before training starts, so that data prepared for
    the run (e.g. synthesized views) can live inside it.

    An existing run is deleted only on ``overwrite``; a run that was prepared for the same config
    but never finished an epoch (e.g. interrupted while rendering its views) is kept as it is.
    """
    path = Path(run_dir)
    files = RunFiles(path)
    if path.exists() and any(path.iterdir()):
        if not overwrite and _is_unstarted_run(files, config):
            return path
        if not overwrite:
            raise OutputExistsError(f"run directory {path} already exists (use --resume or --overwrite)")
        if not files.is_run():
            raise CheckpointError(f"{path}: refusing to overwrite a folder that is not a PoseNet run")
        shutil.rmtree(path)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / RUN_MARKER, {"format": RUN_FORMAT, "version": 1})
    atomic_write_text(path / CONFIG_FILE, dump_yaml(config))
    return path


def create_run_dir(run_dir: Path, config: TrainConfig, overwrite: bool) -> RunFiles:
    """A fresh run directory with its marker and config; an existing run is deleted only on ``overwrite``."""
    return RunFiles(prepare_run_dir(run_dir, config, overwrite))
