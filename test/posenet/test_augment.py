from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import ConfigError, validate_mapping
from geoloc_ros.geometry.frames import body_pose_from_optical
from geoloc_ros.geometry.pose import rotation_from_ypr
from geoloc_ros.posenet.augment import AugmentConfig, Augmenter, rotated_view_pose, rotation_homography

CAMERA = PinholeCamera.from_hfov(96, 72, 60.0)


def test_augmentation_keeps_shape_dtype_and_is_seeded(synth: SimpleNamespace) -> None:
    image = synth.render_view(CAMERA, 1.0, 2.0, 0.3)
    augmenter = Augmenter(AugmentConfig(), CAMERA)
    out, pose = augmenter(image, synth.view_pose(1.0, 2.0, 0.3), np.random.default_rng(5))
    assert out.shape == image.shape and out.dtype == np.uint8
    again, pose_again = augmenter(image, synth.view_pose(1.0, 2.0, 0.3), np.random.default_rng(5))
    np.testing.assert_array_equal(out, again)
    np.testing.assert_array_equal(pose.as_matrix(), pose_again.as_matrix())
    other, _ = augmenter(image, synth.view_pose(1.0, 2.0, 0.3), np.random.default_rng(6))
    assert np.abs(other.astype(int) - out.astype(int)).mean() > 1.0
    # The camera centre never moves: only rotations are simulated.
    np.testing.assert_allclose(pose.translation, synth.view_pose(1.0, 2.0, 0.3).translation)


def test_disabled_augmentation_is_identity(synth: SimpleNamespace) -> None:
    image = synth.render_view(CAMERA, 0.0, 0.0, 1.0)
    pose = synth.view_pose(0.0, 0.0, 1.0)
    out, out_pose = Augmenter(AugmentConfig(enabled=False), CAMERA)(image, pose, np.random.default_rng(0))
    assert out is image and out_pose is pose


def test_homography_agrees_with_rotated_pose_projection(synth: SimpleNamespace) -> None:
    rng = np.random.default_rng(2)
    pose = synth.view_pose(3.0, -1.0, 0.4)
    r_delta = rotation_from_ypr(np.deg2rad(4.0), np.deg2rad(-1.5), np.deg2rad(2.0))
    new_pose = rotated_view_pose(pose, r_delta)
    homography = rotation_homography(CAMERA, r_delta, zoom=1.02)
    zoomed = PinholeCamera(96, 72, CAMERA.fx * 1.02, CAMERA.fy * 1.02, CAMERA.cx, CAMERA.cy)
    points_optical = np.column_stack([rng.uniform(-3, 3, 50), rng.uniform(-2, 2, 50), rng.uniform(5, 40, 50)])
    points_map = pose.transform_points(points_optical)
    uv, _ = CAMERA.project(points_optical)
    uv_new, _ = zoomed.project(new_pose.inverse().transform_points(points_map))
    mapped = np.column_stack([uv, np.ones(len(uv))]) @ homography.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], uv_new, atol=1e-9)


def test_only_keeps_every_other_change_neutral(synth: SimpleNamespace) -> None:
    image = synth.render_view(CAMERA, 1.0, 2.0, 0.3)
    pose = synth.view_pose(1.0, 2.0, 0.3)
    out, same = Augmenter(AugmentConfig.only(), CAMERA)(image, pose, np.random.default_rng(3))
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1  # resampled in place only
    np.testing.assert_allclose(same.as_matrix(), pose.as_matrix(), atol=1e-12)
    noisy, _ = Augmenter(AugmentConfig.only(noise_probability=1.0), CAMERA)(
        image, pose, np.random.default_rng(3)
    )
    assert np.abs(noisy.astype(int) - image.astype(int)).mean() > 0.5
    with pytest.raises(ValueError):
        AugmentConfig.only(gamma_range=(0.0, 1.0))


def test_yaw_augmentation_matches_a_render_at_the_new_heading(synth: SimpleNamespace) -> None:
    """The rotated image is what a camera turned to the new target heading sees, and no other."""
    config = AugmentConfig.only(yaw_deg=AugmentConfig().yaw_deg)
    image = synth.render_view(CAMERA, 2.0, 1.0, 0.5)
    out, new_pose = Augmenter(config, CAMERA)(
        image, synth.view_pose(2.0, 1.0, 0.5), np.random.default_rng(11)
    )
    new_yaw = body_pose_from_optical(new_pose).yaw
    assert abs(new_yaw - 0.5) > np.deg2rad(2.0)  # this seed turns the camera noticeably
    inner = (slice(4, -4), slice(12, -12))  # away from the reflected border

    def difference(yaw: float) -> float:
        truth = synth.render_view(CAMERA, 2.0, 1.0, yaw)
        return float(np.abs(out[inner].astype(int) - truth[inner].astype(int)).mean())

    offsets_deg = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
    diffs = [difference(new_yaw + np.deg2rad(d)) for d in offsets_deg]
    assert int(np.argmin(diffs)) == offsets_deg.index(0.0)
    assert difference(0.5) > 2.0 * diffs[offsets_deg.index(0.0)]


def test_photometric_only_keeps_the_pose(synth: SimpleNamespace) -> None:
    config = AugmentConfig(yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, scale_range=(1.0, 1.0))
    pose = synth.view_pose(0.0, 0.0, 0.0)
    out, out_pose = Augmenter(config, CAMERA)(
        synth.render_view(CAMERA, 0.0, 0.0, 0.0), pose, np.random.default_rng(0)
    )
    np.testing.assert_allclose(out_pose.as_matrix(), pose.as_matrix(), atol=1e-12)
    assert out.dtype == np.uint8


def test_config_rejects_bad_ranges() -> None:
    with pytest.raises(ConfigError, match="exposure_range"):
        validate_mapping(AugmentConfig, {"exposure_range": (1.5, 1.0)}, "aug.yaml")
    with pytest.raises(ConfigError, match="jpeg_quality_range"):
        validate_mapping(AugmentConfig, {"jpeg_quality_range": (0, 90)}, "aug.yaml")
    with pytest.raises(ConfigError, match=r"aug\.yaml: yaw_deg"):
        validate_mapping(AugmentConfig, {"yaw_deg": 45}, "aug.yaml")
