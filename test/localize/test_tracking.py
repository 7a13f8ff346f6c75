"""Motion tracker: Kalman motion prior, prior age, losing the track, time going backwards."""

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import TrackingConfig
from geoloc_ros.localize.tracking import MotionTracker, ypr_of

S = 1_000_000_000
FRAME = S // 20  # 20 Hz


def _tracker(**settings: float) -> MotionTracker:
    return MotionTracker(TrackingConfig(**settings))


def _cov(sigma_m: float, yaw_sigma_rad: float = 0.005) -> np.ndarray:
    return np.diag([sigma_m**2] * 3 + [1e-4, 1e-4, yaw_sigma_rad**2])


def _drive(
    tracker: MotionTracker, n: int, speed: float, sigma_m: float, seed: int = 0, start: int = 0
) -> None:
    """``n`` poses along x at ``speed`` with ``sigma_m`` noise, frames ``start`` onwards."""
    rng = np.random.default_rng(seed)
    for i in range(start, start + n):
        x = speed * i / 20 + rng.normal(0.0, sigma_m)
        tracker.accept(i * FRAME, Pose3D.from_xyz_ypr([x, rng.normal(0.0, sigma_m), 1.7], 0.0), _cov(sigma_m))


def test_exact_poses_extrapolate_velocity_and_yaw_rate():
    tracker = _tracker()
    assert tracker.predict(0) is None
    tracker.accept(0, Pose3D.from_xyz_ypr([0.0, 0.0, 1.7], 0.0))
    first = tracker.predict(FRAME)
    assert first is not None and not first.has_velocity
    np.testing.assert_allclose(first.pose.translation, [0.0, 0.0, 1.7])
    assert first.sigma_m > 0.5  # the velocity is unknown at a track's first pose
    # Exact poses on a circle of radius 10 m at 10 m/s (1 rad/s): the track follows the arc.
    for i in range(1, 20):
        yaw = i / 20
        position = [10.0 * np.sin(yaw), 10.0 * (1.0 - np.cos(yaw)), 1.7]
        tracker.accept(i * FRAME, Pose3D.from_xyz_ypr(position, yaw))
    predicted = tracker.predict(20 * FRAME)
    assert predicted is not None and predicted.has_velocity
    np.testing.assert_allclose(
        predicted.pose.translation, [10.0 * np.sin(1.0), 10.0 * (1 - np.cos(1.0)), 1.7], atol=0.01
    )
    assert abs(predicted.pose.yaw - 1.0) < 0.005
    assert abs(predicted.age_s - 0.05) < 1e-12
    velocity = tracker.velocity_xy
    assert velocity is not None and abs(np.linalg.norm(velocity) - 10.0) < 0.05


def test_one_outlier_pose_moves_the_velocity_by_little():
    tracker = _tracker()
    _drive(tracker, 40, speed=10.0, sigma_m=0.5)
    before = tracker.velocity_xy
    assert before is not None and abs(before[0] - 10.0) < 1.0
    # A pose 0.9 m off (a panorama switch): two-pose differencing made that an 18 m/s error.
    tracker.accept(40 * FRAME, Pose3D.from_xyz_ypr([10.0 * 2.0 + 0.9, 0.0, 1.7], 0.0), _cov(0.5))
    after = tracker.velocity_xy
    assert after is not None and np.linalg.norm(after - before) < 2.0
    # One 10 m off lies far beyond the innovation gate: it pulls no more than a pose on the gate.
    tracker = _tracker()
    _drive(tracker, 40, speed=10.0, sigma_m=0.5)
    tracker.accept(40 * FRAME, Pose3D.from_xyz_ypr([10.0 * 2.0 + 10.0, 0.0, 1.7], 0.0), _cov(0.5))
    gated = tracker.velocity_xy
    assert gated is not None and np.linalg.norm(gated - before) < 3.0
    predicted = tracker.predict(41 * FRAME)
    assert predicted is not None and abs(predicted.pose.translation[0] - 20.5) < 2.0


def test_a_precise_pose_counts_more_than_a_vague_one():
    pulled = []
    for sigma in (0.05, 2.0):
        tracker = _tracker()
        _drive(tracker, 40, speed=10.0, sigma_m=0.3)
        expected = tracker.predict(41 * FRAME)
        tracker.accept(40 * FRAME, Pose3D.from_xyz_ypr([20.5, 0.0, 1.7], 0.0), _cov(sigma))
        predicted = tracker.predict(41 * FRAME)
        assert expected is not None and predicted is not None
        pulled.append(predicted.pose.translation[0] - expected.pose.translation[0])
    assert pulled[0] > 4 * pulled[1] > 0.0


def test_a_real_speed_change_is_followed_within_a_second():
    tracker = _tracker()
    _drive(tracker, 40, speed=10.0, sigma_m=0.3, seed=1)
    # Braking at 4 m/s^2 to a stop (2.5 s), then standing: poses with 0.3 m noise.
    rng = np.random.default_rng(2)
    x0 = 10.0 * 39 / 20
    for k in range(1, 101):
        t = k / 20
        x = x0 + (10.0 * t - 2.0 * t * t if t <= 2.5 else 12.5)
        tracker.accept(
            (39 + k) * FRAME, Pose3D.from_xyz_ypr([x + rng.normal(0, 0.3), 0.0, 1.7], 0.0), _cov(0.3)
        )
        if k == 70:  # 1 s after stopping
            velocity = tracker.velocity_xy
            assert velocity is not None and np.linalg.norm(velocity) < 1.0
        if k == 30:  # braking, 1.5 s in: 4 m/s
            velocity = tracker.velocity_xy
            assert velocity is not None and abs(velocity[0] - 4.0) < 1.5
    velocity = tracker.velocity_xy
    assert velocity is not None and np.linalg.norm(velocity) < 1.0


def test_repeated_far_poses_restart_the_track():
    tracker = _tracker(max_gated_updates=3)
    _drive(tracker, 20, speed=10.0, sigma_m=0.1)
    for k in range(3):  # the vehicle is really 30 m elsewhere (a wrong track)
        tracker.accept((20 + k) * FRAME, Pose3D.from_xyz_ypr([50.0 + 0.5 * k, 0.0, 1.7], 0.0), _cov(0.1))
    predicted = tracker.predict(23 * FRAME)
    assert predicted is not None and not predicted.has_velocity
    np.testing.assert_allclose(predicted.pose.translation, [51.0, 0.0, 1.7], atol=1e-3)


def test_prediction_sigma_grows_with_time():
    tracker = _tracker()
    _drive(tracker, 40, speed=10.0, sigma_m=0.3)
    sigmas = [tracker.predict(39 * FRAME + k * FRAME).sigma_m for k in (1, 4, 10, 20)]
    assert all(b > a for a, b in itertools.pairwise(sigmas))
    assert sigmas[0] < 0.3  # forty poses know more than one
    loose = _tracker(acceleration_sigma_mps2=6.0)
    _drive(loose, 40, speed=10.0, sigma_m=0.3)
    assert loose.predict(59 * FRAME).sigma_m > sigmas[-1]


def test_old_priors_and_repeated_failures_lose_the_track():
    tracker = _tracker(max_prior_age_s=0.5, max_failures=2)
    tracker.accept(0, Pose3D.identity())
    assert tracker.predict(S // 2) is not None
    assert tracker.predict(S) is None  # too old
    tracker.miss()
    assert tracker.predict(S // 10) is not None
    tracker.miss()
    assert tracker.predict(S // 10) is None  # lost after two failures


def test_time_going_backwards_restarts_the_history():
    tracker = _tracker()
    tracker.accept(10 * S, Pose3D.from_xyz_ypr([5.0, 0.0, 0.0]))
    tracker.accept(5 * S, Pose3D.from_xyz_ypr([0.0, 0.0, 0.0]))
    predicted = tracker.predict(5 * S + S // 10)
    assert predicted is not None and not predicted.has_velocity
    np.testing.assert_allclose(predicted.pose.translation, [0.0, 0.0, 0.0])
    assert tracker.predict(4 * S) is None


def test_ypr_of_agrees_with_pose3d():
    rng = np.random.default_rng(0)
    for _ in range(50):
        yaw, pitch, roll = rng.uniform(-np.pi, np.pi), rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        pose = Pose3D.from_xyz_ypr([0.0, 0.0, 0.0], yaw, pitch, roll)
        np.testing.assert_allclose(ypr_of(pose.rotation), pose.ypr, atol=1e-9)


def test_the_last_fix_outlives_the_track_until_reset():
    tracker = _tracker(max_failures=2)
    assert tracker.last_fix() is None
    pose = Pose3D.from_xyz_ypr([3.0, 4.0, 0.0], 0.5)
    tracker.accept(S, pose, _cov(0.2))
    tracker.miss()
    tracker.miss()
    assert tracker.predict(S + S // 10) is None  # the track is lost...
    stamp, last, sigma = tracker.last_fix()  # ...but not where the vehicle was
    assert stamp == S and abs(sigma - 0.2) < 1e-9
    np.testing.assert_allclose(last.translation, pose.translation)
    tracker.reset()
    assert tracker.last_fix() is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("acceleration_sigma_mps2", 0.0),
        ("yaw_acceleration_sigma_radps2", -1.0),
        ("innovation_gate_probability", 1.0),
        ("innovation_gate_probability", 0.3),  # a GateProbability, as every gate: above one half
        ("initial_speed_sigma_mps", 0.0),
        ("max_gated_updates", 0),
    ],
)
def test_bad_motion_settings_are_refused(field: str, value: float):
    with pytest.raises(ValidationError, match=field):
        TrackingConfig(**{field: value})


def test_a_covariance_that_is_not_6x6_is_refused_with_a_clear_error():
    """``accept`` takes the pose's 6x6 covariance (it once took a sigma): a scalar or a 3x3 is refused
    before the track changes, not an IndexError deep in the filter."""
    tracker = _tracker()
    pose = Pose3D.from_xyz_ypr([1.0, 2.0, 1.7], 0.3)
    for bad in (0.5, np.eye(3) * 0.25):
        with pytest.raises(ValueError, match="6x6"):
            tracker.accept(S, pose, bad)
        assert tracker.last_fix() is None and tracker.predict(S) is None
    tracker.accept(S, pose, _cov(0.5))
    assert tracker.last_fix() is not None
