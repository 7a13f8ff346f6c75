"""PoseNet losses: the seed's beta weighting, learned homoscedastic weighting, aleatoric NLL.

With ``e_p = |p - p̂|`` (normalised position, Euclidean) and ``e_r = |r - r̂ / |r̂||`` (heading
``(cos, sin)`` or quaternion; the prediction is normalised, so only its direction matters):

- ``beta`` (PoseNet, Kendall et al. 2015, the seed): ``mean(e_p) + beta * mean(e_r)``;
- ``homoscedastic`` (Kendall & Cipolla 2017): ``mean(e_p) exp(-s_p) + s_p + mean(e_r) exp(-s_r) + s_r``
  with learned scalars ``s_p``, ``s_r`` (initialised to 0 and 0: positions are normalised here,
  unlike the paper's metres, for which it starts ``s_r`` at -3);
- aleatoric NLL of the per-sample log-variance outputs ``(z_p, z_r)``, added with weight
  ``nll_weight``: ``0.5 mean(exp(-z_p) e_p^2 + d_p z_p) + 0.5 mean(exp(-z_r) e_r^2 + d_r z_r)``,
  with ``d_p`` the position dimension (2 or 3) and ``d_r`` 1 for a heading, 3 for a quaternion.
  The residuals are detached in this term: it calibrates the variance outputs and does not pull
  the pose away from what the pose loss asks for. Its minimum is at ``exp(z_p) = e_p^2 / d_p``,
  the per-axis variance (see :mod:`geoloc_ros.posenet.targets` for the units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from geoloc_ros.config import StrictModel
from geoloc_ros.posenet.errors import ModelError
from geoloc_ros.posenet.targets import pose_output_size, position_size


class LossConfig(StrictModel):
    kind: Literal["beta", "homoscedastic"] = "homoscedastic"
    # Seed weighting of the orientation term (positions are normalised: with a position scale of
    # ~50 m, beta = 1 weighs 1 degree of heading error like ~0.9 m of position error).
    beta: float = Field(1.0, gt=0.0)
    # Initial learned log weights of the homoscedastic loss. Kendall & Cipolla start the rotation
    # weight at -3 for positions in metres; with normalised positions both terms start near 1,
    # and equal weights (0, 0) trained clearly better positions in our runs.
    init_s_position: float = 0.0
    init_s_rotation: float = 0.0
    # Weight of the aleatoric NLL term that trains the log-variance outputs; 0 disables it.
    nll_weight: float = Field(1.0, ge=0.0)


@dataclass
class LossTerms:
    """The total to minimise and its parts (batch means, normalised units)."""

    total: torch.Tensor
    position: torch.Tensor
    rotation: torch.Tensor
    nll: torch.Tensor


def position_residual(pose_out: torch.Tensor, target: torch.Tensor, dof: int) -> torch.Tensor:
    """Per-sample Euclidean distance between predicted and target normalised positions."""
    n = position_size(dof)
    return torch.linalg.vector_norm(pose_out[:, :n] - target[:, :n], dim=1)


def rotation_residual(pose_out: torch.Tensor, target: torch.Tensor, dof: int) -> torch.Tensor:
    """Per-sample chord between the target and the normalised predicted heading/quaternion."""
    n = position_size(dof)
    predicted = pose_out[:, n:]
    unit = predicted / torch.linalg.vector_norm(predicted, dim=1, keepdim=True).clamp_min(1e-8)
    return torch.linalg.vector_norm(unit - target[:, n:], dim=1)


def aleatoric_nll(residual: torch.Tensor, log_var: torch.Tensor, dim: int) -> torch.Tensor:
    """``0.5 mean(exp(-z) e^2 + dim z)``: Gaussian NLL of a ``dim``-D isotropic residual of norm ``e``."""
    return 0.5 * torch.mean(torch.exp(-log_var) * residual.detach() ** 2 + dim * log_var)


class PoseLoss(nn.Module):
    """The configured pose loss plus the NLL term; holds the learned weights of the homoscedastic loss."""

    def __init__(self, config: LossConfig, dof: int) -> None:
        super().__init__()
        self.config = config
        self.dof = dof
        self.width = pose_output_size(dof)
        self.s_position = nn.Parameter(torch.tensor(float(config.init_s_position)))
        self.s_rotation = nn.Parameter(torch.tensor(float(config.init_s_rotation)))
        # The learned weights exist (and are checkpointed) for both kinds; only one kind trains them.
        self.s_position.requires_grad_(config.kind == "homoscedastic")
        self.s_rotation.requires_grad_(config.kind == "homoscedastic")

    def forward(self, pose_out: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> LossTerms:
        if (
            pose_out.shape[1] != self.width
            or target.shape != pose_out.shape
            or log_var.shape != (len(pose_out), 2)
        ):
            raise ModelError(
                f"loss expects pose {tuple(pose_out.shape)} and target {tuple(target.shape)} of width "
                f"{self.width} and log_var ({len(pose_out)}, 2), got log_var {tuple(log_var.shape)}"
            )
        e_p = position_residual(pose_out, target, self.dof)
        e_r = rotation_residual(pose_out, target, self.dof)
        position, rotation = e_p.mean(), e_r.mean()
        if self.config.kind == "beta":
            total = position + self.config.beta * rotation
        else:
            total = (
                position * torch.exp(-self.s_position)
                + self.s_position
                + rotation * torch.exp(-self.s_rotation)
                + self.s_rotation
            )
        nll = aleatoric_nll(e_p, log_var[:, 0], position_size(self.dof)) + aleatoric_nll(
            e_r, log_var[:, 1], 1 if self.dof == 3 else 3
        )
        if self.config.nll_weight > 0:
            total = total + self.config.nll_weight * nll
        return LossTerms(total, position.detach(), rotation.detach(), nll.detach())
