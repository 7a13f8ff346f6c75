"""The feature cache of PoseNet training: the frozen backbone prefix run once over augmented copies.

See :mod:`geoloc_ros.posenet.train` for why (cost model) and how the copies are seeded.
:class:`ViewSamples` turns ``(view, copy)`` items into network tensors and targets (copy 0 is the
clean view); :func:`build_feature_cache` runs :class:`PrefixRunner` (torch or onnxruntime) over them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geoloc_ros.posenet.augment import Augmenter
from geoloc_ros.posenet.dataset import ViewSource
from geoloc_ros.posenet.errors import DatasetError, PoseNetError
from geoloc_ros.posenet.model import PoseNet
from geoloc_ros.posenet.preprocess import InputSpec, resize_for_network, to_network_tensor
from geoloc_ros.posenet.targets import PoseNormalization, encode_targets
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

# Tag of the augmentation random stream derived from the training seed.
AUGMENT_STREAM = 1


class ViewSamples(Dataset):
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
            rng = np.random.default_rng([self.seed, AUGMENT_STREAM, view, copy])
            image, pose = self.augmenter(image, pose, rng)
        x = to_network_tensor([image], self.spec)[0]
        y = encode_targets([pose], self.normalization)[0]
        return torch.from_numpy(x), torch.from_numpy(y)


def _loader_worker_init(_: int) -> None:
    # Workers share 2 cores with the main process: one thread each.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def view_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_loader_worker_init if workers > 0 else None,
        # Samples draw their randomness from (seed, view, copy), not from the loader; a fixed
        # generator only keeps the loader from consuming the global torch RNG.
        generator=torch.Generator().manual_seed(0),
    )


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, dtype=torch.float32, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


@dataclass
class FeatureCache:
    train_features: torch.Tensor  # (n_train * copies, C, h, w) float16
    train_targets: torch.Tensor  # (n_train * copies, D)
    val_features: torch.Tensor  # (n_val, C, h, w) float16
    val_targets: torch.Tensor


class PrefixRunner:
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
            return self.model.frozen_features(to_device(x, self.device)).to("cpu", torch.float16)
        (features,) = self._session.run(["features"], {"image": x.numpy().astype(np.float32, copy=False)})
        return torch.from_numpy(features).to(torch.float16)


def build_feature_cache(
    model: PoseNet,
    samples: ViewSamples,
    n_train: int,
    copies: int,
    device: torch.device,
    batch_size: int,
    workers: int,
    max_gb: float,
    engine: str = "auto",
) -> FeatureCache:
    """Run the frozen prefix once over every (view, copy) item (train items first, then val)."""
    model.eval()
    prefix = PrefixRunner(model, engine, device)
    features: torch.Tensor | None = None
    targets = torch.empty((len(samples), model.head.pose.out_features), dtype=torch.float32)
    row = 0
    started = time.monotonic()
    progress = progress_bar(total=len(samples), desc="caching frozen features", unit="img")
    with torch.no_grad():
        for x, y in view_loader(samples, batch_size, workers):
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
    return FeatureCache(features[:split], targets[:split], features[split:], targets[split:])
