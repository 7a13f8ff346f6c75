from __future__ import annotations

import math

import pytest
import torch

from geoloc_ros.posenet.errors import ModelError
from geoloc_ros.posenet.losses import LossConfig, PoseLoss, aleatoric_nll

# One sample: predicted position (3, 4) for target (0, 0) -> e_p = 5; predicted heading
# direction (1, 0) (given unnormalised as (2, 0)) for target (0, 1) -> chord e_r = sqrt(2).
POSE = torch.tensor([[3.0, 4.0, 2.0, 0.0]])
TARGET = torch.tensor([[0.0, 0.0, 0.0, 1.0]])


def test_beta_loss_hand_checked() -> None:
    loss = PoseLoss(LossConfig(kind="beta", beta=2.0, nll_weight=0.0), dof=3)
    terms = loss(POSE, torch.zeros(1, 2), TARGET)
    assert float(terms.position) == pytest.approx(5.0)
    assert float(terms.rotation) == pytest.approx(math.sqrt(2.0))
    assert float(terms.total) == pytest.approx(5.0 + 2.0 * math.sqrt(2.0))


def test_homoscedastic_loss_hand_checked_and_learns_its_weights() -> None:
    loss = PoseLoss(
        LossConfig(kind="homoscedastic", init_s_position=math.log(2.0), init_s_rotation=-1.0, nll_weight=0.0),
        3,
    )
    terms = loss(POSE, torch.zeros(1, 2), TARGET)
    expected = 5.0 / 2.0 + math.log(2.0) + math.sqrt(2.0) * math.e - 1.0
    assert float(terms.total.detach()) == pytest.approx(expected)
    terms.total.backward()
    # d/ds (L e^-s + s) = 1 - L e^-s
    assert float(loss.s_position.grad) == pytest.approx(1.0 - 5.0 / 2.0)
    assert float(loss.s_rotation.grad) == pytest.approx(1.0 - math.sqrt(2.0) * math.e)
    beta = PoseLoss(LossConfig(kind="beta"), 3)
    assert not beta.s_position.requires_grad and not beta.s_rotation.requires_grad


def test_aleatoric_nll_hand_checked_minimum_and_detached_residual() -> None:
    residual = torch.tensor([5.0], requires_grad=True)
    log_var = torch.tensor([math.log(12.5)], requires_grad=True)  # e^2 / d with d = 2
    nll = aleatoric_nll(residual, log_var, dim=2)
    assert float(nll.detach()) == pytest.approx(0.5 * (25.0 / 12.5 + 2.0 * math.log(12.5)))
    nll.backward()
    assert float(log_var.grad) == pytest.approx(0.0, abs=1e-6)  # the optimum is e^2 / d
    assert residual.grad is None  # the NLL only calibrates the variance outputs


def test_nll_term_is_added_with_its_weight() -> None:
    log_var = torch.tensor([[0.0, 0.0]])
    without = PoseLoss(LossConfig(kind="beta", beta=1.0, nll_weight=0.0), 3)(POSE, log_var, TARGET)
    with_nll = PoseLoss(LossConfig(kind="beta", beta=1.0, nll_weight=0.5), 3)(POSE, log_var, TARGET)
    nll = 0.5 * 25.0 + 0.5 * 2.0  # 0.5 e_p^2 and 0.5 e_r^2 at zero log-variance
    assert float(without.nll) == pytest.approx(nll)
    assert float(with_nll.total) == pytest.approx(float(without.total) + 0.5 * nll)


def test_six_dof_loss_uses_quaternion_chord_and_checks_shapes() -> None:
    loss = PoseLoss(LossConfig(kind="beta", beta=1.0, nll_weight=0.0), dof=6)
    pose = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    assert float(loss(pose, torch.zeros(1, 2), target).total) == pytest.approx(1.0)
    with pytest.raises(ModelError, match="width 7"):
        loss(POSE, torch.zeros(1, 2), TARGET)
