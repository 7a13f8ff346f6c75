"""The panoramas' own pose errors, learned online from the frames that see several of them.

On a map whose panoramas state a pose uncertainty, the pose solved from panorama ``p``'s points is
``x_p = x + S_p m_p + n_p`` (:mod:`geoloc_ros.localize.combine`): the true pose ``x`` moved by the
panorama's error ``m_p = (δx, δy, ε)`` through its sensitivity ``S_p``, plus pixel noise ``n_p``. The
error is a property of the map, constant over the drive; so whenever a frame sees panoramas ``p``
and ``q`` together, ``x_p - x_q = S_p m_p - S_q m_q + n_p - n_q`` measures their *relative* error,
and a later frame that rests on ``p`` alone can be corrected by what was learned.

:class:`PanoramaOffsets` is that estimator: a linear Gaussian state over the panoramas seen so far,
with the stated uncertainty as its prior. The prior has the correlated structure the covariance
model already assumes (``CovarianceConfig.map_correlation`` = ρ: a capture car's drift is shared by
neighbouring panoramas), written as a common error ``c`` and independent ones ``u_p``, all with unit
variance: ``m_p = D_p (√ρ c + √(1-ρ) u_p)``, ``D_p = diag(σ_p, σ_p, σ_h,p)``. A panorama seen for
the first time adds its ``u_p`` (independent of everything known), one that is long unseen is
marginalised out (``OffsetsConfig.max_panoramas``) — the state stays small on a city-scale map.

Per frame (:meth:`PanoramaOffsets.estimate`), with solutions ``z_k`` (6,) each a function of one or
more panoramas (``H_k = Σ S_kp M_p`` over its panoramas, ``M_p`` the row block mapping the state to
``m_p``) and pixel covariances ``R_k``:

- the differences ``z_k - z_0`` (x, y and yaw only: the map error model is planar) do not depend on
  ``x``; with a flat prior on ``x`` they carry all the frame says about the state. A Kalman update
  with them gives the state's posterior ``(μ', P')`` for this frame.
- ``x̂ = G (z - H μ')`` with ``G = (Σ R_k⁻¹)⁻¹ [R_k⁻¹]`` and
  ``Cov x̂ = (Σ R_k⁻¹)⁻¹ + G H P' Hᵀ Gᵀ``: each solution corrected by the learned errors, weighted by
  its pixel precision, and the map uncertainty that remains (the common error, unobservable from
  panoramas alone, always does). This is the exact posterior of ``x`` under the model; with the
  state at its prior it equals the one-frame combination's covariance.
- the stored state is updated with the same differences, their pixel covariance multiplied by
  ``OffsetsConfig.measurement_inflation`` (consecutive frames see the same points through the same
  depth model, so their errors are far from independent: counting them as independent would make
  the state, and then the published covariance, overconfident), and only when the differences are
  consistent with the state and their pixel noise (the χ² of the innovation within
  ``gate_probability``; a wrong solution must not teach a wrong offset).
- a frame beyond that gate contradicts what was learned of its panoramas: their own errors'
  variance moves ``OffsetsConfig.contradiction_decay`` of the way back to the prior, again until
  the frame is within the gate (then it teaches as above) or the state is back at the prior. So an
  error learned wrongly decays as soon as later frames contradict it and is learned again, instead
  of gating out the truth for good; the decay is stored with the frame's pose like an update.
- a frame beyond the gate even then is not a map offset (wrong matches on one façade, a plane-model
  depth, a solution far weaker than its pixel covariance says): it teaches nothing, its pose is the
  pixel-weighted combination corrected by the (decayed) state, and its covariance is multiplied by
  the disagreement ``r`` = χ² / degrees of freedom (the Birge ratio, as in
  :mod:`geoloc_ros.localize.combine`).
- between frames the vehicle moves, and what a panorama's points say changes with the viewpoint
  (other façades, the plane model's error seen from elsewhere): each held panorama's own error
  gets process noise, its variance returning to the prior over ``OffsetsConfig.relearn_distance_m``
  travelled (:meth:`PanoramaOffsets.travel`). The state never grows surer than what the last
  stretch of road showed.

ROS-free; one instance per :class:`~geoloc_ros.localize.localizer.Localizer` (not thread-safe).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.stats import chi2

from geoloc_ros.localize.config import OffsetsConfig

# Rows of a (6,) pose deviation the map error model acts on: x, y and yaw.
_PLANAR = np.array([0, 1, 5])
# The common error's slots in the state; each panorama's u_p follows.
_COMMON = 3
# Decays of a contradicted panorama's learned error within one frame (0.5 each: 1/128 of the
# learned certainty is left after all).
_MAX_DECAYS = 7


@dataclass(frozen=True)
class OffsetObservation:
    """One pose solution of a frame, as a deviation from the frame's reference pose: its pixel
    covariance, and the panoramas whose points it rests on with their sensitivities ``S`` (k, 6, 3)."""

    deviation: np.ndarray  # (6,)
    pixel_covariance: np.ndarray  # (6, 6)
    panoramas: np.ndarray  # (k,)
    sensitivities: np.ndarray  # (k, 6, 3)


@dataclass(frozen=True)
class OffsetEstimate:
    """The frame's pose deviation (6,) and its covariance (6, 6) with the learned panorama errors
    taken out; ``update`` the state learned from the frame, for :meth:`PanoramaOffsets.commit` once
    its pose is accepted (None: nothing to store)."""

    deviation: np.ndarray
    covariance: np.ndarray
    update: tuple[np.ndarray, np.ndarray] | None
    shares: np.ndarray  # each observation's share of the planar position (trace of its gain on x, y)
    learned: bool = False  # the frame taught the state (else ``update`` only decays what it contradicts)
    # The solutions' disagreement beyond the state (decayed where contradicted) and their pixel noise
    # (χ² per degree of freedom; 0 with one solution), and the panoramas whose learned errors the
    # frame contradicted (their variance moved towards the prior in ``update``).
    disagreement: float = 0.0
    contradicted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return 0.5 * (matrix + matrix.T)


@lru_cache(maxsize=64)
def _gate(probability: float, dof: int) -> float:
    return float(chi2.ppf(probability, dof))


class PanoramaOffsets:
    """Online estimate of the panoramas' pose errors (see the module docstring)."""

    def __init__(
        self,
        position_sigma_m: np.ndarray,
        heading_sigma_rad: np.ndarray,
        correlation: float,
        config: OffsetsConfig,
    ) -> None:
        if not 0.0 <= correlation <= 1.0:
            raise ValueError(f"correlation must be in [0, 1], got {correlation}")
        self.sigma = np.column_stack([position_sigma_m, position_sigma_m, heading_sigma_rad]).astype(
            float
        )  # (P, 3)
        if self.sigma.ndim != 2 or not np.all(np.isfinite(self.sigma)) or np.any(self.sigma < 0):
            raise ValueError("panorama standard deviations must be finite and non-negative")
        self.correlation = float(correlation)
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (back to the stated uncertainty)."""
        self._slots: OrderedDict[int, int] = OrderedDict()  # panorama -> its u_p block (least recent first)
        self.mean = np.zeros(_COMMON)
        self.covariance = np.eye(_COMMON)

    @property
    def panoramas(self) -> list[int]:
        """The panoramas the state holds, least recently seen first."""
        return list(self._slots)

    def offset(self, panorama: int) -> tuple[np.ndarray, np.ndarray]:
        """The panorama's learned error ``(δx, δy, ε)`` and its 3x3 covariance (the prior when unseen)."""
        if panorama not in self._slots:
            d = np.diag(self.sigma[panorama])
            return np.zeros(3), d @ d
        m = self._mixing(panorama)
        return m @ self.mean, _symmetric(m @ self.covariance @ m.T)

    # ------------------------------------------------------------------------------ state
    def _mixing(self, panorama: int) -> np.ndarray:
        """``M_p`` (3, n): ``m_p = M_p s``."""
        m = np.zeros((3, len(self.mean)))
        d = self.sigma[panorama]
        m[:, :_COMMON] = np.diag(d * np.sqrt(self.correlation))
        start = self._slots[panorama]
        m[:, start : start + 3] = np.diag(d * np.sqrt(1.0 - self.correlation))
        return m

    def _admit(self, panoramas: np.ndarray) -> None:
        """Add the unseen panoramas at their prior; mark all as just seen; drop the least recently
        seen beyond ``max_panoramas`` (marginalising a Gaussian: delete its rows and columns)."""
        for p in (int(p) for p in panoramas):
            if p in self._slots:
                self._slots.move_to_end(p)
                continue
            self._slots[p] = len(self.mean)
            self.mean = np.concatenate([self.mean, np.zeros(3)])
            n = len(self.mean)
            grown = np.eye(n)
            grown[: n - 3, : n - 3] = self.covariance
            self.covariance = grown
        keep_out = {int(p) for p in panoramas}
        while len(self._slots) > self.config.max_panoramas:
            oldest = next(p for p in self._slots if p not in keep_out)
            start = self._slots.pop(oldest)
            keep = np.r_[0:start, start + 3 : len(self.mean)]
            self.mean = self.mean[keep]
            self.covariance = self.covariance[np.ix_(keep, keep)]
            for p, s in self._slots.items():
                if s > start:
                    self._slots[p] = s - 3

    # ------------------------------------------------------------------------------ per frame
    def estimate(self, observations: list[OffsetObservation]) -> OffsetEstimate:
        """The frame's pose from its solutions (see the module docstring); with two or more solutions
        that agree with the state, also what the state learns from their differences (not stored:
        :meth:`commit` it when the pose is accepted). Admits the panoramas not yet held."""
        if not observations:
            raise ValueError("PanoramaOffsets.estimate needs at least one observation")
        for o in observations:
            if not (np.all(np.isfinite(o.deviation)) and np.all(np.isfinite(o.pixel_covariance))):
                raise ValueError("an offset observation has a non-finite deviation or covariance")
            if not np.all(np.isfinite(o.sensitivities)):
                raise ValueError("an offset observation has a non-finite sensitivity")
        involved = np.unique(np.concatenate([np.asarray(o.panoramas, dtype=np.int64) for o in observations]))
        self._admit(involved)
        n = len(self.mean)
        k = len(observations)
        z = np.concatenate([np.asarray(o.deviation, dtype=float) for o in observations])  # (6k,)
        h = np.zeros((6 * k, n))
        for i, o in enumerate(observations):
            for p, s in zip(np.asarray(o.panoramas, dtype=np.int64), o.sensitivities, strict=True):
                h[6 * i : 6 * i + 6] += np.asarray(s, dtype=float) @ self._mixing(int(p))
        pixel = [np.asarray(o.pixel_covariance, dtype=float) for o in observations]
        information = [np.linalg.pinv(r) for r in pixel]
        total = np.linalg.pinv(np.sum(information, axis=0))
        gain = np.hstack([total @ w for w in information])  # G (6, 6k)

        mean, covariance = self.mean, self.covariance
        update = None
        widen, ratio, learned = 1.0, 0.0, False
        contradicted = np.zeros(0, np.int64)
        if k >= 2:
            # Differences to the first solution, planar rows: z_d = T z.
            t = np.zeros((3 * (k - 1), 6 * k))
            for i in range(1, k):
                t[3 * (i - 1) : 3 * i, _PLANAR] = -np.eye(3)
                t[3 * (i - 1) : 3 * i, 6 * i + _PLANAR] = np.eye(3)
            r_full = np.zeros((6 * k, 6 * k))
            for i, r in enumerate(pixel):
                r_full[6 * i : 6 * i + 6, 6 * i : 6 * i + 6] = r
            z_d, h_d, r_d = t @ z, t @ h, t @ r_full @ t.T
            innovation = z_d - h_d @ self.mean
            dof = len(innovation)
            gate = _gate(self.config.gate_probability, dof)
            # How far the solutions disagree beyond what the state and their pixel noise explain;
            # while beyond the gate, what was learned of these panoramas decays towards the prior.
            state = self.covariance
            decays = 0
            while True:
                predicted = h_d @ state @ h_d.T
                distance = float(innovation @ np.linalg.solve(predicted + r_d, innovation))
                if distance <= gate or decays == _MAX_DECAYS or self.config.contradiction_decay == 0:
                    break
                state = self._forgotten(state, involved, self.config.contradiction_decay)
                decays += 1
            ratio = distance / dof
            if decays:
                contradicted = involved
            if distance <= gate:
                mean, covariance = self._update(innovation, h_d, state, predicted, r_d)
                inflated = self.config.measurement_inflation * r_d
                update = self._update(innovation, h_d, state, predicted, inflated)
                learned = True
            else:
                # Not a map offset even at the prior (wrong matches, a depth plane, a solution far
                # weaker than it says): teaches nothing, widened by the disagreement instead (the
                # Birge ratio, as the one-frame combination does).
                covariance = state
                widen = max(1.0, ratio)
                update = (self.mean, state) if decays else None
        deviation = gain @ (z - h @ mean)
        moved = gain @ h
        out = (total + moved @ covariance @ moved.T) * widen
        shares = np.array([np.trace(gain[:2, 6 * i : 6 * i + 2]) / 2.0 for i in range(k)])
        return OffsetEstimate(deviation, _symmetric(out), update, shares, learned, ratio, contradicted)

    def travel(self, distance_m: float) -> None:
        """The vehicle moved ``distance_m``: each held panorama's own error becomes that much less
        certain (its variance returns to the prior over ``OffsetsConfig.relearn_distance_m``). What a
        panorama's points say from here is not what they said from there (its plane-model depth,
        the matched façades change), and a wrong learned error must not stay for good."""
        if not np.isfinite(distance_m) or distance_m < 0:
            raise ValueError(f"distance travelled must be finite and non-negative, got {distance_m}")
        if self.config.relearn_distance_m is None or distance_m == 0 or not self._slots:
            return
        self.covariance = self._forgotten(
            self.covariance, np.array(list(self._slots)), distance_m / self.config.relearn_distance_m
        )

    def _forgotten(self, covariance: np.ndarray, panoramas: np.ndarray, fraction: float) -> np.ndarray:
        """``covariance`` with the variance of each panorama's own error ``u_p`` moved ``fraction`` of
        the way back to the prior (1 per axis; never beyond it): process noise, so the state stays a
        Gaussian and its mean is kept."""
        out = covariance.copy()
        for p in panoramas:
            start = self._slots[int(p)]
            rows = np.arange(start, start + 3)
            gap = np.clip(1.0 - np.diag(out)[rows], 0.0, None)
            out[rows, rows] += min(fraction, 1.0) * gap
        return out

    def commit(self, update: tuple[np.ndarray, np.ndarray]) -> None:
        """Store what :meth:`estimate` learned (ignored when panoramas were admitted or forgotten
        since: it no longer fits the state)."""
        mean, covariance = update
        if mean.shape == self.mean.shape:
            self.mean, self.covariance = mean, covariance

    def _update(
        self,
        innovation: np.ndarray,
        h: np.ndarray,
        covariance: np.ndarray,
        predicted: np.ndarray,
        noise: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Kalman update of the state (mean, ``covariance``) (``P - K H P``: O(n² m) for n states and
        m measurements, so a state of hundreds of panoramas stays cheap)."""
        s = predicted + noise
        hp = h @ covariance
        gain = np.linalg.solve(s, hp).T
        mean = self.mean + gain @ innovation
        return mean, _symmetric(covariance - gain @ hp)
