"""Training: a run directory, a feature cache for the frozen backbone prefix, checkpoints, resume.

The loop lives here; the config and run directory in :mod:`geoloc_ros.posenet.train_config`, the
feature cache in :mod:`geoloc_ros.posenet.feature_cache` (both re-exported here).

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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoloc_ros.config import load_yaml
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.atomic import atomic_write_json, atomic_write_text
from geoloc_ros.posenet.augment import Augmenter
from geoloc_ros.posenet.calibration import holdout_mask, variance_scale
from geoloc_ros.posenet.checkpoint import read_checkpoint, resolve_checkpoint, save_checkpoint
from geoloc_ros.posenet.dataset import GroupSplit, ViewSource, split_by_group
from geoloc_ros.posenet.errors import CheckpointError, DatasetError, PoseNetError
from geoloc_ros.posenet.feature_cache import (
    AUGMENT_STREAM,
    FeatureCache,
    PrefixRunner,
    ViewSamples,
    build_feature_cache,
    to_device,
    view_loader,
)
from geoloc_ros.posenet.losses import PoseLoss, position_residual, rotation_residual
from geoloc_ros.posenet.model import ModelConfig, PoseNet, build_model
from geoloc_ros.posenet.preprocess import network_camera
from geoloc_ros.posenet.targets import (
    PoseNormalization,
    decode_outputs,
    pose_errors,
    position_size,
)
from geoloc_ros.posenet.train_config import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    RUN_FORMAT,
    RUN_MARKER,
    SPLIT_FILE,
    SUMMARY_FILE,
    DataConfig,
    OptimConfig,
    RunFiles,
    TrainConfig,
    config_from_mapping,
    create_run_dir,
    load_run_config,
    open_run_to_resume,
    prepare_run_dir,
)
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

# Defined in train_config / feature_cache; importable from here as before.
__all__ = [
    "AUGMENT_STREAM",
    "BEST_CHECKPOINT",
    "CONFIG_FILE",
    "LAST_CHECKPOINT",
    "METRICS_FILE",
    "RUN_FORMAT",
    "RUN_MARKER",
    "SPLIT_FILE",
    "SUMMARY_FILE",
    "DataConfig",
    "FeatureCache",
    "OptimConfig",
    "PrefixRunner",
    "TrainConfig",
    "TrainResult",
    "config_from_mapping",
    "load_run_config",
    "prepare_run_dir",
    "resolve_device",
    "train",
    "variance_scale",
]

# Tag of the epoch random stream derived from the seed (augmentation: feature_cache.AUGMENT_STREAM).
_EPOCH_STREAM = 2


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
    coverage: float = 0.5,
) -> dict[str, float]:
    """Validation metrics: losses, errors in metres and degrees, variance calibration factors
    (matched at the ``coverage`` quantile, see :func:`~geoloc_ros.posenet.calibration.variance_scale`)."""
    model.eval()
    outputs, log_vars, targets = [], [], []
    with torch.no_grad():
        for x, y in batches:
            xd = to_device(x, device)
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
        "val_position_variance_scale": variance_scale(e_p, lv[:, 0], position_size(dof), coverage),
        "val_rotation_variance_scale": variance_scale(e_r, lv[:, 1], 1 if dof == 3 else 3, coverage),
    }


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
    cache_dir: str | Path | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train a PoseNet on ``source`` into ``run_dir`` (or continue the run there with ``resume``).

    ``map_origin`` (the map bundle's origin) is stored in the checkpoints and the exported model,
    so evaluation against geodetic ground truth needs no map at hand. ``data_info`` (what the
    views are, e.g. counts per kind and the synthesis summary) goes into ``summary.json``.

    ``config`` may be omitted when resuming (the run's config.yaml is used); if given, it must
    equal the stored one. ``time_budget_s`` stops after the epoch during which the budget ran out
    (checkpoints stay valid; resume continues). ``epoch_callback`` receives each epoch's metrics.
    ``cache_dir`` keeps the feature cache on disk (one file per prefix, input, augmentation, seed
    and view set) so that runs differing only in their head or schedule skip the caching.

    ``init_from`` (a run directory, whose best checkpoint is taken, or a checkpoint file) starts
    the new run from that run's model and loss weights instead of the backbone's ImageNet weights:
    fine-tuning, or training on for more epochs with this config's own schedule (a fresh optimizer).
    Its ``model`` section (but for ``pretrained``/``weights_path``, which it replaces) and the
    training views (their pose normalisation) must be the same;
    the calibration model is not carried over, so ``calibration.enabled`` is refused with it.
    """
    run_path = Path(run_dir)
    if resume and overwrite:
        raise CheckpointError(f"{run_path}: resume and overwrite exclude each other")
    if resume and init_from is not None:
        raise CheckpointError(f"{run_path}: resume continues the run's own checkpoint; drop init_from")
    if len(source) == 0:
        raise DatasetError("the view source is empty")
    init: _InitState | None = None
    if resume:
        files = open_run_to_resume(run_path)
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
        # Checked before the run directory is made: a refused init_from leaves nothing behind.
        if init_from is not None:
            init = _read_init_state(init_from, config, source)
        files = create_run_dir(run_path, config, overwrite)

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
            None if cache_dir is None else Path(cache_dir),
            init,
        )
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


@dataclass(frozen=True)
class _InitState:
    """The weights a run starts from (``init_from``) and where they came from."""

    path: Path
    model: dict[str, Any]
    loss: dict[str, Any]
    normalization: PoseNormalization
    epoch: int


# Where a run's first weights come from (ImageNet, a file, none): init_from replaces them, so they need
# not match the run's (a run trained from scratch or with --weights FILE is continued without them).
_INITIAL_WEIGHTS_FIELDS = frozenset({"pretrained", "weights_path"})


def _read_init_state(init_from: str | Path, config: TrainConfig, source: ViewSource) -> _InitState:
    """Read and check the checkpoint named by ``init_from`` against ``config`` and the training
    views of ``source``."""
    path = resolve_checkpoint(init_from)
    state = read_checkpoint(path)
    if config.calibration.enabled:
        raise CheckpointError(
            f"{path}: calibration.enabled trains a calibration model from scratch, which does not "
            "fit a run initialised from another; calibrate in the run trained from scratch"
        )
    try:
        stored = ModelConfig.model_validate(state["config"]["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read its model config: {exc}") from None
    differing = sorted(
        k
        for k in ModelConfig.model_fields
        if k not in _INITIAL_WEIGHTS_FIELDS and getattr(stored, k) != getattr(config.model, k)
    )
    if differing:
        raise CheckpointError(
            f"{path}: its model section differs from this config's in {differing}; "
            "initialising from a run needs the same model"
        )
    normalization = PoseNormalization.from_dict(state["normalization"])
    if not _same_normalization(normalization, _split_and_normalization(source, config)[1]):
        raise CheckpointError(
            f"{path}: trained on other views (another pose normalisation); "
            "initialising from a run needs the same training views"
        )
    return _InitState(path, state["model"], state["loss"], normalization, int(state["epoch"]))


def _split_and_normalization(source: ViewSource, config: TrainConfig) -> tuple[GroupSplit, PoseNormalization]:
    """The run's split of ``source`` by group, and the pose normalisation of its training views."""
    split = split_by_group([source.group(i) for i in range(len(source))], config.val_fraction, config.seed)
    return split, PoseNormalization.fit(_poses(source, split.train_indices), config.model.dof)


def _same_normalization(a: PoseNormalization, b: PoseNormalization) -> bool:
    return bool(
        np.allclose(a.position_mean, b.position_mean) and np.isclose(a.position_scale, b.position_scale)
    )


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
        cache_dir: Path | None = None,
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
            key = _cache_key(config, items, normalization)
            stored = None if cache_dir is None else cache_dir / f"{key}.pt"
            if stored is not None and stored.is_file():
                self.cache = FeatureCache(**torch.load(stored, weights_only=True))
                logger.info("feature cache read from %s", stored)
            else:
                self.cache = build_feature_cache(
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
                if stored is not None:
                    stored.parent.mkdir(parents=True, exist_ok=True)
                    tmp = stored.with_suffix(".tmp")
                    torch.save(vars(self.cache), tmp)
                    tmp.replace(stored)
                    logger.info("feature cache written to %s", stored)
            self.val_batches: list[tuple[torch.Tensor, torch.Tensor]] = [
                (self.cache.val_features[i : i + batch], self.cache.val_targets[i : i + batch])
                for i in range(0, len(self.val_idx), batch)
            ]
        else:
            val_items = np.array([(int(v), 0) for v in self.val_idx]).reshape(-1, 2)
            self.val_batches = (
                list(view_loader(self._samples(val_items), batch, workers)) if len(val_items) else []
            )
        n_train = len(self.train_idx)
        # A trailing batch of one is skipped: BatchNorm cannot train on it.
        self.steps_per_epoch = n_train // batch + (1 if n_train % batch >= 2 else 0)
        if self.steps_per_epoch == 0:
            raise DatasetError(f"{n_train} training view(s): need at least 2 to train")

    def _samples(self, items: np.ndarray) -> ViewSamples:
        return ViewSamples(
            self.source, items, self.spec, self.augmenter, self.normalization, self.config.seed
        )

    def train_batches(
        self, epoch: int, positions: np.ndarray | None = None
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled batches of the training views (only those at ``positions`` in ``train_idx`` if given)."""
        rng = np.random.default_rng([self.config.seed, _EPOCH_STREAM, epoch])
        chosen = np.arange(len(self.train_idx)) if positions is None else np.asarray(positions)
        n_train, batch = len(chosen), self.config.batch_size
        order = chosen[rng.permutation(n_train)]
        if self.cached:
            copies = self.config.cache_copies
            rows = torch.from_numpy(order * copies + rng.integers(0, copies, n_train))
            return (
                (
                    self.cache.train_features[rows[i : i + batch]],
                    self.cache.train_targets[rows[i : i + batch]],
                )
                for i in range(0, n_train, batch)
            )
        # Copy ids >= 1 are augmented; a new id per epoch gives fresh augmentation.
        items = np.stack([self.train_idx[order], np.full(n_train, epoch + 1)], axis=1)
        return view_loader(self._samples(items), batch, self.workers)

    def clean_batches(self, positions: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the clean copies of the training views at ``positions`` (in order)."""
        batch = self.config.batch_size
        if self.cached:
            rows = torch.from_numpy(np.asarray(positions) * self.config.cache_copies)
            features, targets = self.cache.train_features, self.cache.train_targets
            chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
            return [(features[chunk], targets[chunk]) for chunk in chunks]
        items = np.stack([self.train_idx[positions], np.zeros(len(positions), dtype=np.int64)], axis=1)
        return list(view_loader(self._samples(items), batch, self.workers))


def _cache_key(config: TrainConfig, items: list[tuple[int, int]], normalization: PoseNormalization) -> str:
    """What the cached features depend on: the frozen prefix, the input, the augmented copies, the views."""
    import hashlib

    model = config.model
    data = {
        "prefix": model.model_dump(
            mode="json", include={"backbone", "pretrained", "weights_path", "keep_stages", "freeze_stages"}
        ),
        "input": [model.input_width, model.input_height, model.dof],
        "augment": config.augment.model_dump(mode="json"),
        "seed": config.seed,
        "items": items,
        "normalization": normalization.to_dict(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _SubsetData:
    """The epochs of ``data`` restricted to some of its training views (the calibration model's)."""

    def __init__(self, data: _EpochData, positions: np.ndarray) -> None:
        self.data, self.positions, self.cached = data, positions, data.cached
        batch = data.config.batch_size
        n = len(positions)
        self.steps_per_epoch = n // batch + (1 if n % batch >= 2 else 0)
        if self.steps_per_epoch == 0:
            raise DatasetError(f"{n} calibration training view(s): need at least 2 to train")

    def train_batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self.data.train_batches(epoch, self.positions)


def _train_epoch(
    model: PoseNet,
    loss_fn: PoseLoss,
    optimizer: torch.optim.Optimizer,
    data: _EpochData | _SubsetData,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
    desc: str = "epoch",
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
        desc=f"{desc} {epoch + 1}/{config.epochs}",
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
        xd, yd = to_device(x, device), y.to(device)
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


def _new_training_state(
    config: TrainConfig, device: torch.device, load_pretrained: bool = True
) -> tuple[PoseNet, PoseLoss, torch.optim.Optimizer]:
    """A fresh model (seeded by the caller), its loss and optimizer: the final and the calibration
    model start alike."""
    model = build_model(config.model, load_pretrained=load_pretrained).to(device)
    # NHWC is ~1.5x faster for these depthwise convolutions on CPU (torch's stubs lack the keyword).
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loss_fn = PoseLoss(config.loss, config.model.dof).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, loss_fn, config.optim), lr=config.optim.lr)
    return model, loss_fn, optimizer


def _calibrate(
    source: ViewSource,
    data: _EpochData,
    config: TrainConfig,
    normalization: PoseNormalization,
    device: torch.device,
    overall: Any,
) -> dict[str, Any]:
    """Train the calibration model without the held-out location cells; its held-out figures.

    Returns ``calibration_*`` metrics: the variance factors (see
    :mod:`geoloc_ros.posenet.calibration`), the held-out errors and the counts.
    """
    started = time.monotonic()
    cal = config.calibration
    positions = np.array([source.pose(int(i)).translation[:2] for i in data.train_idx])
    held_out = holdout_mask(positions, cal, config.seed)
    fit_positions, out_positions = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    logger.info(
        "calibration: training on %d views, %d views held out in %.0f m cells",
        len(fit_positions),
        len(out_positions),
        cal.cell_m,
    )
    torch.manual_seed(config.seed + 1)
    model, loss_fn, optimizer = _new_training_state(config, device)
    subset = _SubsetData(data, fit_positions)
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch + 1)
        _train_epoch(model, loss_fn, optimizer, subset, epoch, config, device, desc="calibration epoch")
        overall.update(1)
    truth = _poses(source, data.train_idx[out_positions])
    batches = data.clean_batches(out_positions)
    held = _evaluate(model, loss_fn, batches, data.cached, truth, normalization, device, cal.coverage)
    metrics = {f"calibration_{k.removeprefix('val_')}": v for k, v in held.items()}
    metrics["calibration_views_held_out"] = len(out_positions)
    metrics["calibration_views_fit"] = len(fit_positions)
    metrics["calibration_seconds"] = time.monotonic() - started
    logger.info(
        "calibration: held-out median %.2f m / %.2f deg; variance factors %.3g (position), %.3g (heading)",
        metrics["calibration_median_position_m"],
        metrics["calibration_median_rotation_deg"],
        metrics["calibration_position_variance_scale"],
        metrics["calibration_rotation_variance_scale"],
    )
    return metrics


def _train(
    source: ViewSource,
    files: RunFiles,
    config: TrainConfig,
    device: torch.device,
    workers: int,
    resume: bool,
    time_budget_s: float | None,
    epoch_callback: EpochCallback | None,
    map_origin: GeoOrigin | None,
    data_info: dict[str, Any] | None,
    cache_dir: Path | None = None,
    init: _InitState | None = None,
) -> TrainResult:
    started = time.monotonic()
    split, normalization = _split_and_normalization(source, config)
    val_truth = _poses(source, split.val_indices)
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
    model, loss_fn, optimizer = _new_training_state(
        config, device, load_pretrained=not resume and init is None
    )

    history: list[dict[str, Any]] = []
    start_epoch, best_score, best_epoch = 0, math.inf, 0
    best_metrics: dict[str, Any] = {}
    calibration: dict[str, Any] = {}
    if resume:
        state = read_checkpoint(files.path(LAST_CHECKPOINT))
        if not _same_normalization(PoseNormalization.from_dict(state["normalization"]), normalization):
            raise CheckpointError(f"{files.root}: the training views differ from those the run started with")
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        best_metrics = dict(state.get("best_metrics") or {})
        calibration = dict(state.get("calibration") or {})
        init_from = state.get("init_from")
        logger.info("resuming %s after epoch %d", files.root, start_epoch)
    else:
        init_from = None
        if init is not None:  # its views checked by _read_init_state
            model.load_state_dict(init.model)
            loss_fn.load_state_dict(init.loss)
            init_from = {"checkpoint": str(init.path.resolve()), "epoch": init.epoch}
            logger.info("starting from %s (after its epoch %d)", init.path, init.epoch)
        atomic_write_json(files.path(SPLIT_FILE), split.to_dict())

    data_started = time.monotonic()
    data = _EpochData(model, source, split, config, augmenter, normalization, device, workers, cache_dir)
    seconds_data = time.monotonic() - data_started
    calibrate = config.calibration.enabled and not calibration
    # Every epoch of the run (the calibration model's and the final model's) in one bar: its
    # remaining time is the estimate of when training ends (epochs cost the same on the cache).
    overall = progress_bar(
        total=(config.epochs if calibrate else 0) + config.epochs - start_epoch,
        desc="posenet training",
        unit="epoch",
    )
    if calibrate:
        calibration = _calibrate(source, data, config, normalization, device, overall)
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
        metrics.update(calibration)
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
            "map_id": (data_info or {}).get("map_id"),
            "split": split.to_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "best_metrics": best_metrics,
            "calibration": calibration,
            "init_from": init_from,
        }
        save_checkpoint(files.path(LAST_CHECKPOINT), payload)
        if improved:
            save_checkpoint(files.path(BEST_CHECKPOINT), payload)
        atomic_write_text(files.path(METRICS_FILE), "".join(json.dumps(m) + "\n" for m in history))
        _log_epoch(metrics, config.epochs, improved)
        overall.update(1)
        if epoch_callback is not None:
            epoch_callback(metrics)
        out_of_time = time_budget_s is not None and time.monotonic() - started > time_budget_s
        if out_of_time and epoch + 1 < config.epochs:
            logger.warning("time budget of %.0f s used up after epoch %d: stopping", time_budget_s, epoch + 1)
            stopped_early = True
            break

    overall.close()
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
            "seconds_calibration": float(calibration.get("calibration_seconds", 0.0)),
            "data": dict(data_info or {}),
            "init_from": init_from,
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
