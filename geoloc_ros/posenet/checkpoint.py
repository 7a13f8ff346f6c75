"""Training checkpoints: one ``.pt`` file readable with ``torch.load(weights_only=True)``.

Contents: format tag and version, the full training config, the model and loss state dicts, the
optimizer state, the pose normalisation, the training camera, the split, the epoch reached, the
metrics history and the best score so far. Everything is plain Python or tensors, so loading
never executes pickled code. Writes are atomic (a crash leaves the previous file intact).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import validate_mapping
from geoloc_ros.errors import GeolocError
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.io.atomic import atomic_write_bytes
from geoloc_ros.posenet.errors import CheckpointError
from geoloc_ros.posenet.model import ModelConfig, PoseNet, build_model
from geoloc_ros.posenet.targets import PoseNormalization
from geoloc_ros.posenet.train_config import BEST_CHECKPOINT, LAST_CHECKPOINT

CHECKPOINT_FORMAT = "geoloc_ros.posenet.checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (plain data + tensors) with the format tag."""
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{p}: cannot read checkpoint: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not a geoloc_ros PoseNet checkpoint")
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {data.get('version')} is not supported (expected {CHECKPOINT_VERSION})"
        )
    for key in ("config", "model", "normalization", "camera", "epoch"):
        if key not in data:
            raise CheckpointError(f"{p}: checkpoint lacks {key!r}")
    return data


@dataclass
class TrainedModel:
    """A network restored from a checkpoint, with what export and evaluation need."""

    model: PoseNet
    model_config: ModelConfig
    normalization: PoseNormalization
    camera: PinholeCamera
    epoch: int
    summary: dict[str, Any]
    map_origin: GeoOrigin | None = None
    map_id: str | None = None  # MapBundle.bundle_id of the map it was trained on


def load_trained_model(path: str | Path) -> TrainedModel:
    """Rebuild the network of a checkpoint (no pretrained download or file needed) in eval mode."""
    data = read_checkpoint(path)
    source = f"{path}: config.model"
    model_config = validate_mapping(ModelConfig, data["config"].get("model"), source)
    try:
        normalization = PoseNormalization.from_dict(data["normalization"], f"{path}: normalization")
        camera = PinholeCamera.from_dict(data["camera"], f"{path}: camera")
    except GeolocError as exc:
        raise CheckpointError(str(exc)) from None
    model = build_model(model_config, load_pretrained=False)
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: model weights do not fit the stored config: {exc}") from None
    model.eval()
    summary = dict(data.get("best_metrics") or {})
    origin = data.get("map_origin")
    try:
        map_origin = GeoOrigin.from_dict(origin) if isinstance(origin, dict) else None
    except (GeolocError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid map_origin {origin!r}: {exc}") from None
    map_id = data.get("map_id")
    return TrainedModel(
        model,
        model_config,
        normalization,
        camera,
        int(data["epoch"]),
        summary,
        map_origin,
        str(map_id) if map_id else None,
    )


def resolve_checkpoint(run_or_checkpoint: str | Path, which: str = "best") -> Path:
    """A run directory -> its ``best``/``last`` checkpoint; a ``.pt`` file is returned as is."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        if which not in ("best", "last"):
            raise CheckpointError(f"checkpoint must be 'best' or 'last', got {which!r}")
        path = path / (BEST_CHECKPOINT if which == "best" else LAST_CHECKPOINT)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path
