"""Motion tracker: constant-velocity prediction, prior age, losing the track, time going backwards."""

import numpy as np

from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.tracking import MotionTracker, ypr_of

S = 1_000_000_000


def test_prediction_extrapolates_velocity_and_yaw_rate():
    tracker = MotionTracker(max_prior_age_s=1.0, max_failures=3)
    assert tracker.predict(0) is None
    tracker.accept(0, Pose3D.from_xyz_ypr([0.0, 0.0, 1.7], 0.0))
    first = tracker.predict(S // 20)
    assert first is not None and not first.has_velocity
    np.testing.assert_allclose(first.pose.translation, [0.0, 0.0, 1.7])
    tracker.accept(S // 10, Pose3D.from_xyz_ypr([1.0, 0.5, 1.7], 0.1))
    predicted = tracker.predict(S // 5)
    assert predicted is not None and predicted.has_velocity
    np.testing.assert_allclose(predicted.pose.translation, [2.0, 1.0, 1.7], atol=1e-9)
    np.testing.assert_allclose(predicted.pose.yaw, 0.2, atol=1e-9)
    assert abs(predicted.age_s - 0.1) < 1e-12
    assert tracker.speed_mps is not None and abs(tracker.speed_mps - np.hypot(10.0, 5.0)) < 1e-9


def test_old_priors_and_repeated_failures_lose_the_track():
    tracker = MotionTracker(max_prior_age_s=0.5, max_failures=2)
    tracker.accept(0, Pose3D.identity())
    assert tracker.predict(S // 2) is not None
    assert tracker.predict(S) is None  # too old
    tracker.miss()
    assert tracker.predict(S // 10) is not None
    tracker.miss()
    assert tracker.predict(S // 10) is None  # lost after two failures


def test_time_going_backwards_restarts_the_history():
    tracker = MotionTracker(max_prior_age_s=1.0, max_failures=3)
    tracker.accept(10 * S, Pose3D.from_xyz_ypr([5.0, 0.0, 0.0]))
    tracker.accept(5 * S, Pose3D.from_xyz_ypr([0.0, 0.0, 0.0]))
    predicted = tracker.predict(5 * S + S // 10)
    assert predicted is not None and not predicted.has_velocity
    assert tracker.predict(4 * S) is None


def test_ypr_of_agrees_with_pose3d():
    rng = np.random.default_rng(0)
    for _ in range(50):
        yaw, pitch, roll = rng.uniform(-np.pi, np.pi), rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        pose = Pose3D.from_xyz_ypr([0.0, 0.0, 0.0], yaw, pitch, roll)
        np.testing.assert_allclose(ypr_of(pose.rotation), pose.ypr, atol=1e-9)


def test_the_last_fix_outlives_the_track_until_reset():
    tracker = MotionTracker(max_prior_age_s=1.0, max_failures=2)
    assert tracker.last_fix() is None
    pose = Pose3D.from_xyz_ypr([3.0, 4.0, 0.0], 0.5)
    tracker.accept(1_000_000_000, pose, 0.2)
    tracker.miss()
    tracker.miss()
    assert tracker.predict(1_100_000_000) is None  # the track is lost...
    stamp, last, sigma = tracker.last_fix()  # ...but not where the vehicle was
    assert stamp == 1_000_000_000 and sigma == 0.2
    np.testing.assert_allclose(last.translation, pose.translation)
    tracker.reset()
    assert tracker.last_fix() is None
