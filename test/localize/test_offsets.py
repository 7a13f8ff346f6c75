"""Learning the panoramas' pose errors online: the linear model recovers their relative errors, the
published covariance holds (Monte Carlo with fixed seeds), frames that disagree teach nothing,
forgetting panoramas marginalises them, and bad inputs are refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from geoloc_ros.localize.config import OffsetsConfig
from geoloc_ros.localize.offsets import OffsetObservation, PanoramaOffsets

PLANAR = np.array([0, 1, 5])
SIGMA_M, SIGMA_RAD = 1.0, np.radians(1.5)
PIXEL = np.diag([0.05, 0.05, 0.05, 0.002, 0.002, 0.003]) ** 2


def _sensitivity(lever: np.ndarray) -> np.ndarray:
    """A pose that moves with its panorama: by (δx, δy), and by ε about the panorama's centre
    (``lever``: camera minus panorama centre)."""
    s = np.zeros((6, 3))
    s[0, 0] = s[1, 1] = s[5, 2] = 1.0
    s[0, 2], s[1, 2] = -lever[1], lever[0]
    return s


def _draw_errors(rng: np.random.Generator, n: int, correlation: float) -> np.ndarray:
    common = rng.normal(size=3)
    own = rng.normal(size=(n, 3))
    return (np.sqrt(correlation) * common + np.sqrt(1.0 - correlation) * own) * [SIGMA_M, SIGMA_M, SIGMA_RAD]


def _observe(rng, errors, truth, panoramas, ranges):
    """Each panorama's pose solution as a deviation from ``truth`` (6,), with pixel noise."""
    out = []
    for p in panoramas:
        lever = rng.normal(size=2) * ranges
        s = _sensitivity(lever)
        noise = rng.multivariate_normal(np.zeros(6), PIXEL)
        out.append(OffsetObservation(truth + s @ errors[p] + noise, PIXEL, np.array([p]), s[None]))
    return out


def _offsets(n: int, correlation: float, **config: float) -> PanoramaOffsets:
    return PanoramaOffsets(np.full(n, SIGMA_M), np.full(n, SIGMA_RAD), correlation, OffsetsConfig(**config))


def _drive(rng, offsets, errors, frames):
    """Frames along a row of panoramas: each frame sees panorama i and usually i + 1."""
    n = len(errors)
    for k in range(frames):
        first = (k * (n - 1)) // frames
        seen = [first, first + 1] if rng.random() < 0.7 else [first]
        truth = np.concatenate([rng.normal(size=3), 0.01 * rng.normal(size=3)])
        observations = _observe(rng, errors, truth, seen, 10.0)
        estimate = offsets.estimate(observations)
        if estimate.update is not None:
            offsets.commit(estimate.update)


def test_a_fresh_state_gives_the_stated_uncertainty() -> None:
    offsets = _offsets(3, 0.5)
    s = _sensitivity(np.array([8.0, -3.0]))
    observation = OffsetObservation(np.arange(6) * 0.1, PIXEL, np.array([1]), s[None])
    estimate = offsets.estimate([observation])
    d = np.diag([SIGMA_M, SIGMA_M, SIGMA_RAD])
    np.testing.assert_allclose(estimate.deviation, np.arange(6) * 0.1, atol=1e-12)
    np.testing.assert_allclose(estimate.covariance, PIXEL + s @ d @ d @ s.T, rtol=1e-9, atol=1e-15)
    assert estimate.update is None and not estimate.learned  # one solution: nothing to learn
    np.testing.assert_allclose(estimate.shares, [1.0])
    two = offsets.estimate([observation, OffsetObservation(np.zeros(6), 4.0 * PIXEL, np.array([2]), s[None])])
    np.testing.assert_allclose(two.shares, [0.8, 0.2], atol=1e-9)  # by pixel precision: 4 to 1


def test_learning_recovers_the_relative_errors_and_corrects_single_panorama_frames() -> None:
    rng = np.random.default_rng(1)
    correlation = 0.3
    before, after, residuals = [], [], []
    for _ in range(30):
        errors = _draw_errors(rng, 6, correlation)
        offsets = _offsets(6, correlation)
        probe = [_observe(rng, errors, np.zeros(6), [p], 10.0) for p in range(6)]
        before += [offsets.estimate(o).deviation[:2] for o in probe]
        _drive(rng, offsets, errors, 60)
        after += [offsets.estimate(o).deviation[:2] for o in probe]
        # What is learned is the relative error: the errors minus their common part.
        learned = np.array([offsets.offset(p)[0] for p in range(6)])
        relative = errors - errors.mean(axis=0)
        residuals.append(np.sqrt(np.mean((learned - learned.mean(axis=0) - relative)[:, :2] ** 2)))
    # A drive links neighbours only: now and then one link is seen by few frames and stays loose.
    assert np.median(residuals) < 0.1
    assert np.mean(np.array(residuals) < 0.2) >= 0.9
    rms_before = np.sqrt(np.mean(np.square(before)))
    rms_after = np.sqrt(np.mean(np.square(after)))
    # Only the common part (variance share 0.3 plus what six panoramas leave of the rest) remains.
    assert rms_after < 0.75 * rms_before


def test_the_published_covariance_holds() -> None:
    """Last frame of each of many independent drives (one panorama, corrected by what was learned):
    the share of true poses inside the 95 % ellipse is within ±4 binomial sigmas of 95 %."""
    rng = np.random.default_rng(2)
    correlation = 0.5
    trials, inside = 300, 0
    for _ in range(trials):
        errors = _draw_errors(rng, 5, correlation)
        offsets = _offsets(5, correlation, measurement_inflation=1.0)
        _drive(rng, offsets, errors, 12)
        truth = np.zeros(6)
        estimate = offsets.estimate(_observe(rng, errors, truth, [int(rng.integers(5))], 10.0))
        d = (estimate.deviation - truth)[:2]
        inside += float(d @ np.linalg.solve(estimate.covariance[:2, :2], d)) <= chi2.ppf(0.95, 2)
    bound = 4.0 * np.sqrt(0.95 * 0.05 / trials)
    assert abs(inside / trials - 0.95) <= bound


def test_a_frame_that_disagrees_with_what_was_learned_teaches_nothing() -> None:
    rng = np.random.default_rng(4)
    errors = _draw_errors(rng, 3, 0.5)
    offsets = _offsets(3, 0.5)
    _drive(rng, offsets, errors, 40)
    bad = _observe(rng, errors, np.zeros(6), [0, 1], 10.0)
    bad[1] = OffsetObservation(
        bad[1].deviation + np.array([8.0, 0, 0, 0, 0, 0]), PIXEL, bad[1].panoramas, bad[1].sensitivities
    )
    assert not offsets.estimate(bad).learned
    good = _observe(rng, errors, np.zeros(6), [0, 1], 10.0)
    assert offsets.estimate(good).learned


def test_forgetting_a_panorama_marginalises_it() -> None:
    rng = np.random.default_rng(5)
    errors = _draw_errors(rng, 4, 0.5)
    offsets = _offsets(4, 0.5, max_panoramas=3)
    for seen in ([0, 1], [1, 2], [0, 1], [1, 2]):
        estimate = offsets.estimate(_observe(rng, errors, np.zeros(6), seen, 10.0))
        assert estimate.update is not None
        offsets.commit(estimate.update)
    kept = {p: offsets.offset(p) for p in (1, 2)}
    offsets.estimate(_observe(rng, errors, np.zeros(6), [3], 10.0))  # admits 3, forgets 0
    assert offsets.panoramas == [1, 2, 3]
    for p, (mean, covariance) in kept.items():
        np.testing.assert_allclose(offsets.offset(p)[0], mean, atol=1e-12)
        np.testing.assert_allclose(offsets.offset(p)[1], covariance, atol=1e-12)
    # An update computed before the state changed shape is not stored.
    stale = offsets.estimate(_observe(rng, errors, np.zeros(6), [1, 2], 10.0)).update
    assert stale is not None
    offsets.estimate(_observe(rng, errors, np.zeros(6), [0], 10.0))
    shape = offsets.mean.shape
    offsets.commit(stale)
    assert offsets.mean.shape == shape


def test_bad_inputs_are_refused() -> None:
    offsets = _offsets(2, 0.5)
    s = _sensitivity(np.zeros(2))[None]
    with pytest.raises(ValueError, match="at least one"):
        offsets.estimate([])
    with pytest.raises(ValueError, match="non-finite"):
        offsets.estimate([OffsetObservation(np.full(6, np.nan), PIXEL, np.array([0]), s)])
    with pytest.raises(ValueError, match="correlation"):
        PanoramaOffsets(np.ones(2), np.ones(2), 1.5, OffsetsConfig())
    with pytest.raises(ValueError, match="non-negative"):
        PanoramaOffsets(-np.ones(2), np.ones(2), 0.5, OffsetsConfig())


def test_a_frame_that_even_the_prior_cannot_explain_teaches_nothing_and_is_widened() -> None:
    """Two solutions 8 m apart while each states centimetres (a wrong match set, not a map offset):
    what was learned of both panoramas decays back to the prior, the frame still disagrees, so it
    teaches nothing and its covariance grows by the disagreement (the Birge ratio) instead of
    trusting the state's explanation of it."""
    rng = np.random.default_rng(6)
    errors = _draw_errors(rng, 3, 0.5)
    offsets = _offsets(3, 0.5)
    _drive(rng, offsets, errors, 40)
    good = _observe(rng, errors, np.zeros(6), [0, 1], 10.0)
    agreeing = offsets.estimate(good)
    assert agreeing.learned and agreeing.update is not None and len(agreeing.contradicted) == 0
    assert agreeing.disagreement < chi2.ppf(0.999, 3) / 3
    bad = list(good)
    bad[1] = OffsetObservation(
        good[1].deviation + np.array([8.0, 0, 0, 0, 0, 0]), PIXEL, good[1].panoramas, good[1].sensitivities
    )
    disagreeing = offsets.estimate(bad)
    assert not disagreeing.learned
    assert sorted(disagreeing.contradicted.tolist()) == [0, 1]
    assert disagreeing.disagreement > chi2.ppf(0.999, 3) / 3
    # What is stored is the decay alone: the mean untouched, both panoramas' own errors near the prior.
    assert disagreeing.update is not None
    mean, covariance = disagreeing.update
    np.testing.assert_array_equal(mean, offsets.mean)
    own = np.concatenate([np.arange(offsets._slots[p], offsets._slots[p] + 3) for p in (0, 1)])
    assert np.all(np.diag(covariance)[own] > 0.99)
    # Widened by the ratio: at least that many times the agreeing frame's covariance.
    excess = disagreeing.covariance - disagreeing.disagreement * agreeing.covariance
    assert np.linalg.eigvalsh(excess).min() > -1e-12
    # The same pose error is then no surprise.
    d = disagreeing.deviation[:2]
    assert float(d @ np.linalg.solve(disagreeing.covariance[:2, :2], d)) < chi2.ppf(0.95, 2)


def _relative_heading_error(offsets: PanoramaOffsets, errors: np.ndarray) -> float:
    learned = offsets.offset(1)[0][2] - offsets.offset(0)[0][2]
    return abs(learned - (errors[1, 2] - errors[0, 2]))


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_a_contradicted_offset_decays_and_is_learned_again(decay: float) -> None:
    """Panorama 1's solutions are turned 3° for the first 60 frames (a depth plane seen from one
    side): the state learns that as its error and, counting those frames as evidence, grows sure of
    it. Later frames show the truth; they contradict the learned error beyond the gate. Without decay
    (and without the travel term) they are rejected for good and the wrong error stays; with it the
    state returns towards the prior at the first contradiction and learns the truth."""
    rng = np.random.default_rng(7)
    errors = _draw_errors(rng, 2, 0.5)
    offsets = _offsets(2, 0.5, contradiction_decay=decay, relearn_distance_m=None)
    turn = np.zeros(6)
    turn[5] = np.radians(3.0)
    contradicted = 0
    for k in range(200):
        observations = _observe(rng, errors, np.zeros(6), [0, 1], 10.0)
        if k < 60:
            o = observations[1]
            observations[1] = OffsetObservation(
                o.deviation + turn, o.pixel_covariance, o.panoramas, o.sensitivities
            )
        estimate = offsets.estimate(observations)
        contradicted += len(estimate.contradicted) > 0
        if estimate.update is not None:
            offsets.commit(estimate.update)
        if k == 59:
            assert _relative_heading_error(offsets, errors) > np.radians(2.5)
    if decay == 0.0:
        assert contradicted == 0  # nothing decays: the frames are merely gated out
        assert _relative_heading_error(offsets, errors) > np.radians(2.5)
    else:
        assert contradicted > 0
        assert _relative_heading_error(offsets, errors) < np.radians(0.2)


def test_travel_returns_the_learned_errors_to_the_prior() -> None:
    rng = np.random.default_rng(8)
    errors = _draw_errors(rng, 3, 0.5)
    offsets = _offsets(3, 0.5, relearn_distance_m=100.0)
    _drive(rng, offsets, errors, 40)
    own = [offsets._slots[p] for p in offsets.panoramas]  # each panorama's u_p block
    rows = np.concatenate([np.arange(s, s + 3) for s in own])
    learned = np.diag(offsets.covariance)[rows].copy()
    mean = offsets.mean.copy()
    assert np.all(learned < 0.9)
    offsets.travel(50.0)
    np.testing.assert_allclose(np.diag(offsets.covariance)[rows], learned + 0.5 * (1.0 - learned))
    np.testing.assert_array_equal(offsets.mean, mean)  # less sure, not moved
    assert np.linalg.eigvalsh(offsets.covariance).min() > 0
    offsets.travel(1000.0)
    np.testing.assert_allclose(np.diag(offsets.covariance)[rows], 1.0)  # never beyond the prior
    with pytest.raises(ValueError, match="non-negative"):
        offsets.travel(-1.0)
    kept = _offsets(3, 0.5, relearn_distance_m=None)
    _drive(rng, kept, errors, 10)
    before = kept.covariance.copy()
    kept.travel(1000.0)
    np.testing.assert_array_equal(kept.covariance, before)
