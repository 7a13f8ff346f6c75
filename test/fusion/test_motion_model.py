from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.fusion.config import ProcessNoiseConfig
from geoloc_ros.fusion.motion_model import BiasModel, ctrv_transition, predict, process_noise


def _numeric_jacobian(state: np.ndarray, dt: float, eps: float = 1e-6) -> np.ndarray:
    jac = np.zeros((5, 5))
    for k in range(5):
        d = np.zeros(5)
        d[k] = eps
        plus, _ = ctrv_transition(state + d, dt)
        minus, _ = ctrv_transition(state - d, dt)
        diff = plus - minus
        diff[2] = (diff[2] + np.pi) % (2 * np.pi) - np.pi
        jac[:, k] = diff / (2 * eps)
    return jac


@pytest.mark.parametrize(
    "state",
    [
        np.array([3.0, -2.0, 0.7, 9.0, 0.4]),  # turning
        np.array([3.0, -2.0, -2.5, 12.0, -0.8]),
        np.array([0.0, 0.0, 1.2, 10.0, 2e-4]),  # straight-line branch
        np.array([0.0, 0.0, 1.2, 10.0, 0.0]),
    ],
)
def test_ctrv_jacobian_matches_finite_differences(state: np.ndarray) -> None:
    _, jac = ctrv_transition(state, 0.1)
    assert np.allclose(jac, _numeric_jacobian(state, 0.1), atol=1e-5)


def test_ctrv_moves_along_straight_line_and_circle() -> None:
    straight, _ = ctrv_transition(np.array([1.0, 2.0, np.pi / 2, 5.0, 0.0]), 2.0)
    assert np.allclose(straight, [1.0, 12.0, np.pi / 2, 5.0, 0.0])
    # A quarter circle of radius v/w = 10 m, starting east-bound at the origin, turning left.
    w = 0.5
    quarter, _ = ctrv_transition(np.array([0.0, 0.0, 0.0, 5.0, w]), (np.pi / 2) / w)
    assert np.allclose(quarter[:3], [10.0, 10.0, np.pi / 2])


def test_prediction_mean_does_not_depend_on_step_size() -> None:
    state = np.array([0.0, 0.0, 0.3, 10.0, 0.2])
    coarse = predict(state, np.eye(5), 1.0, ProcessNoiseConfig(max_step_s=1.0))[0]
    fine = predict(state, np.eye(5), 1.0, ProcessNoiseConfig(max_step_s=0.01))[0]
    assert np.allclose(coarse, fine, atol=1e-9)


def test_process_noise_is_psd_and_grows_with_time() -> None:
    noise = ProcessNoiseConfig()
    state = np.array([0.0, 0.0, 0.3, 10.0, 0.2])
    q_short, q_long = process_noise(state, 0.05, noise), process_noise(state, 0.5, noise)
    for q in (q_short, q_long):
        assert np.allclose(q, q.T)
        assert np.linalg.eigvalsh(q).min() >= -1e-15
    assert np.all(np.diag(q_long) > np.diag(q_short))
    # Speed variance grows by longitudinal_accel^2 per second (the documented unit).
    assert q_long[3, 3] == pytest.approx(noise.longitudinal_accel**2 * 0.5)


def test_long_prediction_turns_heading_uncertainty_into_cross_track_uncertainty() -> None:
    state = np.array([0.0, 0.0, 0.0, 10.0, 0.0])  # driving east
    _, cov = predict(state, np.diag([0.01, 0.01, 1e-4, 0.01, 1e-4]), 3.0, ProcessNoiseConfig())
    assert cov[1, 1] > 2.0 * cov[0, 0]  # north (cross-track) grows faster than east (along-track)


def test_bias_states_decay_to_their_stationary_variance() -> None:
    biases = BiasModel(np.array([2.0]), np.array([1.5]))
    state = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    cov = np.diag([1.0, 1.0, 0.1, 1.0, 0.1, 0.0])
    mean, out = predict(state, cov, 2.0, ProcessNoiseConfig(), biases)
    assert mean[5] == pytest.approx(math.exp(-1.0))
    assert out[5, 5] == pytest.approx(1.5**2 * (1 - math.exp(-2.0)))
    _, far = predict(state, cov, 60.0, ProcessNoiseConfig(), biases)
    assert far[5, 5] == pytest.approx(1.5**2, rel=1e-6)


def test_predict_rejects_negative_interval_and_wrong_size() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        predict(np.zeros(5), np.eye(5), -0.1, ProcessNoiseConfig())
    with pytest.raises(ValueError, match="biases"):
        predict(np.zeros(6), np.eye(6), 0.1, ProcessNoiseConfig())
