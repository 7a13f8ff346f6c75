"""Training: a run directory, a feature cache for the frozen backbone prefix, checkpoints, resume.

Run directory layout::

    RUN/
      run.json            marker (format + version): only such folders are resumed or overwritten
      config.yaml         the TrainConfig (load it with TrainConfig.load to train again)
      split.json          training and held-out location groups
      metrics.jsonl       one JSON object per finished epoch (rewritten atomically)
      checkpoints/last.pt state after the last finished epoch (what --resume continues from)
      checkpoints/best.pt state at the best validation score so far
      summary.json        written when training ends (finished or out of time budget)

**Why a feature cache.** On a 2-core CPU, the backbone's early high-resolution stages cost most
of the time and need no fine-tuning. They are frozen (``model.freeze_stages``), and their
output is computed once for ``cache_copies`` augmented versions of every training view (copy 0
is the clean view, copies 1.. are augmented with their own seeded random draws) and kept in
memory as float16. Each epoch then draws one copy per view and trains only the later stages and
the head. ``cache_copies: 0`` (or ``freeze_stages: 0``) augments on the fly instead: fresh
augmentation every epoch, full forward pass, the better choice on a GPU.

**Cost model**: caching costs ``views x copies`` image preparations and forward passes of the
frozen prefix; each epoch costs ``train views`` forward+backward passes of the trainable part.
The knobs, in order of effect: ``model.freeze_stages`` (more frozen = faster epochs, less
adaptation), ``model.input_width/height``, ``epochs``, ``cache_copies``.

**Determinism.** Every random draw is derived from ``seed``: augmentation of view ``v`` copy
``c`` from ``(seed, v, c)``, the epoch's order and copies from ``(seed, epoch)``, dropout from a
per-epoch torch seed. An interrupted run resumed from ``last.pt`` therefore reaches the same
weights as an uninterrupted one (on the same device and thread count).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geoloc_ros.config import StrictModel, dump_yaml, load_yaml, validate_mapping
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.covariance import chi2_quantile
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.atomic import OutputExistsError, atomic_write_json, atomic_write_text
from geoloc_ros.posenet.augment import AugmentConfig, Augmenter
from geoloc_ros.posenet.checkpoint import read_checkpoint, save_checkpoint
from geoloc_ros.posenet.dataset import GroupSplit, ViewSource, split_by_group
from geoloc_ros.posenet.errors import CheckpointError, DatasetError, PoseNetError
from geoloc_ros.posenet.losses import LossConfig, PoseLoss, position_residual, rotation_residual
from geoloc_ros.posenet.model import ModelConfig, PoseNet, build_model
from geoloc_ros.posenet.preprocess import InputSpec, network_camera, resize_for_network, to_network_tensor
from geoloc_ros.posenet.synthesis import SynthesisConfig
from geoloc_ros.posenet.targets import (
    PoseNormalization,
    decode_outputs,
    encode_targets,
    pose_errors,
    position_size,
)
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

RUN_MARKER = "run.json"
RUN_FORMAT = "geoloc_ros.posenet.run"
CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LAST_CHECKPOINT = "checkpoints/last.pt"
BEST_CHECKPOINT = "checkpoints/best.pt"

# Tags separating the random streams derived from one seed.
_AUGMENT_STREAM = 1
_EPOCH_STREAM = 2


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

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return load_yaml(path, cls)

    @property
    def uses_cache(self) -> bool:
        return self.cache_copies > 0 and self.model.freeze_stages > 0


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    completed_epochs: int
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


EpochCallback = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; ``cuda`` must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PoseNetError("device 'cuda' requested but torch sees no CUDA device (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise PoseNetError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


class _ViewSamples(Dataset):
    """Network-size tensors and targets of ``(view, copy)`` items; copy 0 is the clean view."""

    def __init__(
        self,
        source: ViewSource,
        items: np.ndarray,
        spec: InputSpec,
        augmenter: Augmenter,
        normalization: PoseNormalization,
        seed: int,
    ) -> None:
        self.source = source
        self.items = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        self.spec = spec
        self.augmenter = augmenter
        self.normalization = normalization
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        view, copy = (int(v) for v in self.items[k])
        image = resize_for_network(self.source.image(view), self.spec)
        pose = self.source.pose(view)
        if copy > 0:
            rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, view, copy])
            image, pose = self.augmenter(image, pose, rng)
        x = to_network_tensor([image], self.spec)[0]
        y = encode_targets([pose], self.normalization)[0]
        return torch.from_numpy(x), torch.from_numpy(y)


def _worker_init(_: int) -> None:
    # Workers share 2 cores with the main process: one thread each.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_worker_init if workers > 0 else None,
        # Samples draw their randomness from (seed, view, copy), not from the loader; a fixed
        # generator only keeps the loader from consuming the global torch RNG.
        generator=torch.Generator().manual_seed(0),
    )


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, dtype=torch.float32, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


@dataclass
class _FeatureCache:
    train_features: torch.Tensor  # (n_train * copies, C, h, w) float16
    train_targets: torch.Tensor  # (n_train * copies, D)
    val_features: torch.Tensor  # (n_val, C, h, w) float16
    val_targets: torch.Tensor


class _PrefixRunner:
    """The frozen backbone prefix, run by torch or by onnxruntime (the same function; the ONNX graph
    is exported from the model itself, so the cached features match the network the head trains on
    to float32 rounding)."""

    def __init__(self, model: PoseNet, engine: str, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.engine = "torch"
        self._session: Any = None
        use_ort = engine == "onnxruntime" or (engine == "auto" and device.type == "cpu")
        if use_ort and model.freeze_stages > 0:
            self._session = self._export(model)
            self.engine = "onnxruntime"

    @staticmethod
    def _export(model: PoseNet) -> Any:
        import copy

        import onnxruntime as ort

        from geoloc_ros.posenet.onnxutil import quiet_onnx_tools

        class _Prefix(nn.Module):
            def __init__(self, backbone: nn.Module, stop: int) -> None:
                super().__init__()
                self.backbone = backbone
                self.stop = stop

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.backbone.forward_stages(x, 0, self.stop)  # type: ignore[operator]

        backbone = copy.deepcopy(model.backbone).float().cpu().eval()
        backbone = backbone.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        prefix = _Prefix(backbone, model.freeze_stages).eval()
        spec = model.config.input_spec
        dummy = torch.zeros((2, 3, spec.height, spec.width), dtype=torch.float32)
        with quiet_onnx_tools(), torch.no_grad():
            program = torch.onnx.export(
                prefix,
                (dummy,),
                input_names=["image"],
                output_names=["features"],
                opset_version=18,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            )
        if program is None:
            raise PoseNetError("torch.onnx.export returned no program for the frozen prefix")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(
            program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen features of a CPU batch, as float16 on the CPU."""
        if self._session is None:
            return self.model.frozen_features(_to_device(x, self.device)).to("cpu", torch.float16)
        (features,) = self._session.run(["features"], {"image": x.numpy().astype(np.float32, copy=False)})
        return torch.from_numpy(features).to(torch.float16)


def _build_cache(
    model: PoseNet,
    samples: _ViewSamples,
    n_train: int,
    copies: int,
    device: torch.device,
    batch_size: int,
    workers: int,
    max_gb: float,
    engine: str = "auto",
) -> _FeatureCache:
    """Run the frozen prefix once over every (view, copy) item (train items first, then val)."""
    model.eval()
    prefix = _PrefixRunner(model, engine, device)
    features: torch.Tensor | None = None
    targets = torch.empty((len(samples), model.head.pose.out_features), dtype=torch.float32)
    row = 0
    started = time.monotonic()
    progress = progress_bar(total=len(samples), desc="caching frozen features", unit="img")
    with torch.no_grad():
        for x, y in _loader(samples, batch_size, workers):
            f = prefix(x)
            if features is None:
                size_gb = len(samples) * f[0].numel() * 2 / 1e9
                if size_gb > max_gb:
                    raise PoseNetError(
                        f"feature cache would take {size_gb:.1f} GB (> cache_max_gb={max_gb}): lower "
                        f"cache_copies, raise model.freeze_stages or the limit"
                    )
                logger.info(
                    "feature cache: %d items of %s, %.2f GB (%s)",
                    len(samples),
                    tuple(f.shape[1:]),
                    size_gb,
                    prefix.engine,
                )
                features = torch.empty((len(samples), *f.shape[1:]), dtype=torch.float16)
            features[row : row + len(f)] = f
            targets[row : row + len(f)] = y
            row += len(f)
            progress.update(len(f))
    progress.close()
    if features is None:
        raise DatasetError("no views to cache")
    logger.info("feature cache built in %.0f s", time.monotonic() - started)
    split = n_train * copies
    return _FeatureCache(features[:split], targets[:split], features[split:], targets[split:])


def _param_groups(model: PoseNet, loss: PoseLoss, config: OptimConfig) -> list[dict[str, Any]]:
    def split_decay(params: Sequence[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        decay = [p for p in params if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
        return decay, no_decay

    groups = []
    for params, scale in (
        (list(model.head.parameters()), 1.0),
        (model.trainable_backbone_parameters(), config.backbone_lr_scale),
    ):
        decay, no_decay = split_decay(params)
        if decay:
            groups.append({"params": decay, "weight_decay": config.weight_decay, "lr_scale": scale})
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lr_scale": scale})
    loss_params = [p for p in loss.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "weight_decay": 0.0, "lr_scale": config.loss_weight_lr_scale})
    return groups


def _lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class _RunFiles:
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


def _open_run_to_resume(run_dir: Path) -> _RunFiles:
    files = _RunFiles(run_dir)
    if not files.is_run():
        raise CheckpointError(f"{run_dir}: not a PoseNet run directory (no {RUN_MARKER}); cannot resume")
    if not files.path(LAST_CHECKPOINT).is_file():
        raise CheckpointError(f"{run_dir}: no {LAST_CHECKPOINT} to resume from")
    return files


def _is_unstarted_run(files: _RunFiles, config: TrainConfig) -> bool:
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
    files = _RunFiles(path)
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


def _create_run_dir(run_dir: Path, config: TrainConfig, overwrite: bool) -> _RunFiles:
    """A fresh run directory with its marker and config; an existing run is deleted only on ``overwrite``."""
    return _RunFiles(prepare_run_dir(run_dir, config, overwrite))


def _poses(source: ViewSource, indices: np.ndarray) -> list[Pose3D]:
    return [source.pose(int(i)) for i in indices]


def _evaluate(
    model: PoseNet,
    loss_fn: PoseLoss,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    from_features: bool,
    truth: Sequence[Pose3D],
    normalization: PoseNormalization,
    device: torch.device,
) -> dict[str, float]:
    """Validation metrics: losses, errors in metres and degrees, variance calibration."""
    model.eval()
    outputs, log_vars, targets = [], [], []
    with torch.no_grad():
        for x, y in batches:
            xd = _to_device(x, device)
            pose_out, log_var = model.forward_from_features(xd) if from_features else model(xd)
            outputs.append(pose_out.float().cpu())
            log_vars.append(log_var.float().cpu())
            targets.append(y)
    pose_out, log_var, target = torch.cat(outputs), torch.cat(log_vars), torch.cat(targets).float()
    terms = loss_fn(pose_out.to(device), log_var.to(device), target.to(device))
    prediction = decode_outputs(pose_out.numpy(), log_var.numpy(), normalization)
    position_error, rotation_error = pose_errors(prediction, truth)
    rotation_deg = np.rad2deg(rotation_error)
    dof = normalization.dof
    e_p = position_residual(pose_out, target, dof).numpy()
    e_r = rotation_residual(pose_out, target, dof).numpy()
    lv = log_var.numpy().astype(np.float64)
    return {
        "val_loss": float(terms.total.detach()),
        "val_nll": float(terms.nll),
        "val_median_position_m": float(np.median(position_error)),
        "val_mean_position_m": float(np.mean(position_error)),
        "val_p90_position_m": float(np.percentile(position_error, 90)),
        "val_median_rotation_deg": float(np.median(rotation_deg)),
        "val_mean_rotation_deg": float(np.mean(rotation_deg)),
        "val_within_2m_3deg": float(np.mean((position_error <= 2.0) & (rotation_deg <= 3.0))),
        # Factors that make the predicted variances fit the held-out errors (1 when calibrated).
        "val_position_variance_scale": variance_scale(e_p, lv[:, 0], position_size(dof)),
        "val_rotation_variance_scale": variance_scale(e_r, lv[:, 1], 1 if dof == 3 else 3),
    }


def variance_scale(residual: np.ndarray, log_var: np.ndarray, dim: int) -> float:
    """Robust factor ``k`` such that ``k * exp(log_var)`` explains ``residual`` (norms of ``dim``-D errors).

    For calibrated variances ``e^2 / var`` follows a chi-square law with ``dim`` degrees of freedom;
    the ratio of its sample median to the law's median is the factor. The median, unlike the
    mean, ignores the few gross failures that the temporal and fusion filters gate out anyway.
    """
    ratio = residual.astype(np.float64) ** 2 / np.exp(log_var.astype(np.float64))
    return float(np.median(ratio) / chi2_quantile(0.5, dim))


def train(
    source: ViewSource,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    device: str = "auto",
    num_threads: int | None = None,
    workers: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    time_budget_s: float | None = None,
    epoch_callback: EpochCallback | None = None,
    map_origin: GeoOrigin | None = None,
    data_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a PoseNet on ``source`` into ``run_dir`` (or continue the run there with ``resume``).

    ``map_origin`` (the map bundle's origin) is stored in the checkpoints and the exported model,
    so evaluation against geodetic ground truth needs no map at hand. ``data_info`` (what the
    views are, e.g. counts per kind and the synthesis summary) goes into ``summary.json``.

    ``config`` may be omitted when resuming (the run's config.yaml is used); if given, it must
    equal the stored one. ``time_budget_s`` stops after the epoch during which the budget ran out
    (checkpoints stay valid; resume continues). ``epoch_callback`` receives each epoch's metrics.
    """
    run_path = Path(run_dir)
    if resume and overwrite:
        raise CheckpointError(f"{run_path}: resume and overwrite exclude each other")
    if len(source) == 0:
        raise DatasetError("the view source is empty")
    if resume:
        files = _open_run_to_resume(run_path)
        stored = load_yaml(files.path(CONFIG_FILE), TrainConfig)
        if config is not None and config != stored:
            differing = sorted(
                k for k in TrainConfig.model_fields if getattr(stored, k) != getattr(config, k)
            )
            raise CheckpointError(
                f"{run_path}: the given config differs from the run's {CONFIG_FILE} in {differing}; "
                f"resume with the stored config (or start a new run)"
            )
        config = stored
    else:
        config = config if config is not None else TrainConfig()
        files = _create_run_dir(run_path, config, overwrite)

    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        return _train(
            source,
            files,
            config,
            resolve_device(device),
            workers,
            resume,
            time_budget_s,
            epoch_callback,
            map_origin,
            data_info,
        )
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


class _EpochData:
    """The batches of each epoch: cached frozen features, or freshly augmented images."""

    def __init__(
        self,
        model: PoseNet,
        source: ViewSource,
        split: GroupSplit,
        config: TrainConfig,
        augmenter: Augmenter,
        normalization: PoseNormalization,
        device: torch.device,
        workers: int,
    ) -> None:
        self.source, self.config, self.augmenter = source, config, augmenter
        self.normalization, self.workers = normalization, workers
        self.train_idx, self.val_idx = split.train_indices, split.val_indices
        self.spec = config.model.input_spec
        self.cached = config.uses_cache
        batch = config.batch_size
        if self.cached:
            copies = config.cache_copies
            items = [(int(v), c) for v in self.train_idx for c in range(copies)]
            items += [(int(v), 0) for v in self.val_idx]
            samples = self._samples(np.array(items))
            self.cache = _build_cache(
                model,
                samples,
                len(self.train_idx),
                copies,
                device,
                batch,
                workers,
                config.cache_max_gb,
                config.cache_engine,
            )
            self.val_batches: list[tuple[torch.Tensor, torch.Tensor]] = [
                (self.cache.val_features[i : i + batch], self.cache.val_targets[i : i + batch])
                for i in range(0, len(self.val_idx), batch)
            ]
        else:
            val_items = np.array([(int(v), 0) for v in self.val_idx]).reshape(-1, 2)
            self.val_batches = (
                list(_loader(self._samples(val_items), batch, workers)) if len(val_items) else []
            )
        n_train = len(self.train_idx)
        # A trailing batch of one is skipped: BatchNorm cannot train on it.
        self.steps_per_epoch = n_train // batch + (1 if n_train % batch >= 2 else 0)
        if self.steps_per_epoch == 0:
            raise DatasetError(f"{n_train} training view(s): need at least 2 to train")

    def _samples(self, items: np.ndarray) -> _ViewSamples:
        return _ViewSamples(
            self.source, items, self.spec, self.augmenter, self.normalization, self.config.seed
        )

    def train_batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.config.seed, _EPOCH_STREAM, epoch])
        n_train, batch = len(self.train_idx), self.config.batch_size
        order = rng.permutation(n_train)
        if self.cached:
            copies = self.config.cache_copies
            rows = torch.from_numpy(order * copies + rng.integers(0, copies, n_train)[order])
            return (
                (
                    self.cache.train_features[rows[i : i + batch]],
                    self.cache.train_targets[rows[i : i + batch]],
                )
                for i in range(0, n_train, batch)
            )
        # Copy ids >= 1 are augmented; a new id per epoch gives fresh augmentation.
        items = np.stack([self.train_idx[order], np.full(n_train, epoch + 1)], axis=1)
        return _loader(self._samples(items), batch, self.workers)


def _train_epoch(
    model: PoseNet,
    loss_fn: PoseLoss,
    optimizer: torch.optim.Optimizer,
    data: _EpochData,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, Any]:
    """One pass over the training views; returns the epoch's mean losses."""
    total_steps = data.steps_per_epoch * config.epochs
    warmup_steps = round(config.optim.warmup_epochs * data.steps_per_epoch)
    model.train()
    sums = np.zeros(4)
    steps = 0
    factor = 0.0
    progress = progress_bar(
        total=data.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="batch",
        leave=False,
    )
    for x, y in data.train_batches(epoch):
        if len(x) < 2:
            continue
        factor = _lr_factor(
            epoch * data.steps_per_epoch + steps, total_steps, warmup_steps, config.optim.min_lr_ratio
        )
        for group in optimizer.param_groups:
            group["lr"] = config.optim.lr * group["lr_scale"] * factor
        xd, yd = _to_device(x, device), y.to(device)
        pose_out, log_var = model.forward_from_features(xd) if data.cached else model(xd)
        terms = loss_fn(pose_out, log_var, yd)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]], config.optim.grad_clip_norm
        )
        optimizer.step()
        sums += [float(terms.total.detach()), float(terms.position), float(terms.rotation), float(terms.nll)]
        steps += 1
        progress.update(1)
        progress.set_postfix(loss=f"{sums[0] / steps:.4f}")
    progress.close()
    return {
        "epoch": epoch + 1,
        "lr": config.optim.lr * factor,
        "train_loss": float(sums[0] / steps),
        "train_position": float(sums[1] / steps),
        "train_rotation": float(sums[2] / steps),
        "train_nll": float(sums[3] / steps),
        "s_position": float(loss_fn.s_position.detach()),
        "s_rotation": float(loss_fn.s_rotation.detach()),
    }


def _train(
    source: ViewSource,
    files: _RunFiles,
    config: TrainConfig,
    device: torch.device,
    workers: int,
    resume: bool,
    time_budget_s: float | None,
    epoch_callback: EpochCallback | None,
    map_origin: GeoOrigin | None,
    data_info: dict[str, Any] | None,
) -> TrainResult:
    started = time.monotonic()
    groups = [source.group(i) for i in range(len(source))]
    split = split_by_group(groups, config.val_fraction, config.seed)
    val_truth = _poses(source, split.val_indices)
    normalization = PoseNormalization.fit(_poses(source, split.train_indices), config.model.dof)
    augmenter = Augmenter(config.augment, network_camera(source.camera, config.model.input_spec))
    logger.info(
        "training on %d views (%d groups), validating on %d views (%d groups), device %s",
        len(split.train_indices),
        len(split.train_groups),
        len(split.val_indices),
        len(split.val_groups),
        device,
    )

    torch.manual_seed(config.seed)
    model = build_model(config.model, load_pretrained=not resume).to(device)
    # NHWC is ~1.5x faster for these depthwise convolutions on CPU (torch's stubs lack the keyword).
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loss_fn = PoseLoss(config.loss, config.model.dof).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, loss_fn, config.optim), lr=config.optim.lr)

    history: list[dict[str, Any]] = []
    start_epoch, best_score, best_epoch = 0, math.inf, 0
    best_metrics: dict[str, Any] = {}
    if resume:
        state = read_checkpoint(files.path(LAST_CHECKPOINT))
        stored_norm = PoseNormalization.from_dict(state["normalization"])
        if not np.allclose(stored_norm.position_mean, normalization.position_mean) or not np.isclose(
            stored_norm.position_scale, normalization.position_scale
        ):
            raise CheckpointError(f"{files.root}: the training views differ from those the run started with")
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        best_metrics = dict(state.get("best_metrics") or {})
        logger.info("resuming %s after epoch %d", files.root, start_epoch)
    else:
        atomic_write_json(files.path(SPLIT_FILE), split.to_dict())

    data_started = time.monotonic()
    data = _EpochData(model, source, split, config, augmenter, normalization, device, workers)
    seconds_data = time.monotonic() - data_started
    stopped_early = False
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.monotonic()
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout draws, resumable per epoch
        metrics = _train_epoch(model, loss_fn, optimizer, data, epoch, config, device)
        if len(val_truth):
            metrics.update(
                _evaluate(model, loss_fn, data.val_batches, data.cached, val_truth, normalization, device)
            )
            score = (
                metrics["val_median_position_m"]
                + config.selection_heading_weight * metrics["val_median_rotation_deg"]
            )
        else:
            score = metrics["train_loss"]
        metrics["score"] = float(score)
        metrics["seconds"] = time.monotonic() - epoch_start
        history.append(metrics)
        improved = score < best_score
        if improved:
            best_score, best_epoch, best_metrics = score, epoch + 1, dict(metrics)
        payload = {
            "config": config.model_dump(mode="json"),
            "model": model.state_dict(),
            "loss": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(),
            "normalization": normalization.to_dict(),
            "camera": source.camera.to_dict("training_views"),
            "map_origin": None if map_origin is None else map_origin.to_dict(),
            "split": split.to_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "best_metrics": best_metrics,
        }
        save_checkpoint(files.path(LAST_CHECKPOINT), payload)
        if improved:
            save_checkpoint(files.path(BEST_CHECKPOINT), payload)
        atomic_write_text(files.path(METRICS_FILE), "".join(json.dumps(m) + "\n" for m in history))
        _log_epoch(metrics, config.epochs, improved)
        if epoch_callback is not None:
            epoch_callback(metrics)
        out_of_time = time_budget_s is not None and time.monotonic() - started > time_budget_s
        if out_of_time and epoch + 1 < config.epochs:
            logger.warning("time budget of %.0f s used up after epoch %d: stopping", time_budget_s, epoch + 1)
            stopped_early = True
            break

    completed = history[-1]["epoch"] if history else start_epoch
    atomic_write_json(
        files.path(SUMMARY_FILE),
        {
            "completed_epochs": completed,
            "epochs": config.epochs,
            "stopped_early": stopped_early,
            "best_epoch": best_epoch,
            "best_metrics": best_metrics,
            "train_views": len(split.train_indices),
            "val_views": len(split.val_indices),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "seconds_this_session": time.monotonic() - started,
            "seconds_feature_cache": seconds_data,
            "seconds_training": float(sum(m.get("seconds", 0.0) for m in history)),
            "data": dict(data_info or {}),
        },
    )
    return TrainResult(
        files.root,
        files.path(BEST_CHECKPOINT),
        files.path(LAST_CHECKPOINT),
        completed,
        best_epoch,
        history,
        stopped_early,
    )


def _log_epoch(metrics: dict[str, Any], epochs: int, improved: bool) -> None:
    validation = ""
    if "val_median_position_m" in metrics:
        validation = (
            f", val median {metrics['val_median_position_m']:.2f} m"
            f" / {metrics['val_median_rotation_deg']:.2f} deg"
        )
    logger.info(
        "epoch %d/%d: loss %.4f%s (%.1f s)%s",
        metrics["epoch"],
        epochs,
        metrics["train_loss"],
        validation,
        metrics["seconds"],
        " best" if improved else "",
    )


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig of a run directory."""
    return load_yaml(Path(run_dir) / CONFIG_FILE, TrainConfig)


def config_from_mapping(data: dict[str, Any], source: str) -> TrainConfig:
    """Validate a mapping (e.g. a YAML config merged with CLI overrides) into a TrainConfig."""
    return validate_mapping(TrainConfig, data, source)
