import pickle

import cv2
import numpy as np
import pytest

from geoloc_ros.bovw.errors import DescriptorError, FeatureInputError
from geoloc_ros.bovw.features import (
    ROOTSIFT_UINT8_SCALE,
    FeatureConfig,
    FeatureExtractor,
    FeatureKind,
    FeatureSet,
    dequantize_rootsift,
    quantize_rootsift,
    rootsift,
    spread_select,
)


@pytest.fixture(scope="module")
def features(textured_image) -> FeatureSet:
    return FeatureExtractor().extract(textured_image)


def test_rootsift_is_unit_l2_and_its_square_unit_l1():
    rng = np.random.default_rng(1)
    sift = rng.uniform(0, 150, (50, 128)).astype(np.float32)
    root = rootsift(sift)
    assert np.all(root >= 0)
    np.testing.assert_allclose(np.linalg.norm(root, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose((root**2).sum(axis=1), 1.0, atol=1e-5)
    # The Hellinger kernel of the L1-normalised SIFT vectors is the dot product of RootSIFT vectors.
    l1 = sift / sift.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(root[0] @ root[1], np.sqrt(l1[0] * l1[1]).sum(), rtol=1e-5)


def test_rootsift_rejects_bad_shapes_and_negative_values():
    with pytest.raises(DescriptorError, match="shape"):
        rootsift(np.zeros((3, 64), np.float32))
    with pytest.raises(DescriptorError, match="non-negative"):
        rootsift(-np.ones((1, 128), np.float32))


def test_uint8_round_trip_error_is_negligible(features):
    # Real descriptors: the stored uint8 values dequantise to nearly unit vectors.
    root = dequantize_rootsift(features.descriptors)
    np.testing.assert_allclose(np.linalg.norm(root, axis=1), 1.0, atol=0.02)
    assert features.descriptors.max() < 255, "clipping at 255 should not happen on real descriptors"
    # Component-wise error of the quantisation is at most half a step.
    rng = np.random.default_rng(2)
    exact = rootsift(rng.uniform(0, 150, (200, 128)).astype(np.float32))
    error = np.abs(dequantize_rootsift(quantize_rootsift(exact)) - exact)
    assert error.max() <= 0.5 / ROOTSIFT_UINT8_SCALE + 1e-7
    assert np.linalg.norm(dequantize_rootsift(quantize_rootsift(exact)) - exact, axis=1).max() < 0.01


def test_extract_gives_sift_and_mser_features_inside_the_image(features, textured_image):
    height, width = textured_image.shape[:2]
    assert features.image_size == (width, height)
    n_sift = int(np.sum(features.kind == FeatureKind.SIFT))
    n_mser = int(np.sum(features.kind == FeatureKind.MSER))
    assert n_sift >= 100
    assert n_mser >= 20, "MSER regions must be found on a blob-textured image"
    assert features.descriptors.dtype == np.uint8 and features.descriptors.shape == (len(features), 128)
    xy = features.keypoints_xy
    assert np.all(
        (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5)
    )
    assert np.all(features.size > 0)
    assert np.all((features.angle >= 0) & (features.angle < 360))
    cfg = FeatureConfig()
    assert n_sift <= cfg.sift_max_features and n_mser <= cfg.mser_max_features


def test_extraction_is_deterministic(textured_image, features):
    again = FeatureExtractor().extract(textured_image)
    np.testing.assert_array_equal(again.descriptors, features.descriptors)
    np.testing.assert_array_equal(again.keypoints_xy, features.keypoints_xy)


def test_processing_scale_maps_keypoints_back_to_input_pixels(textured_image):
    grey = cv2.cvtColor(textured_image, cv2.COLOR_BGR2GRAY)
    doubled = cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    # INTER_AREA halving of a pixel-doubled image gives back the original exactly.
    on_small = FeatureExtractor(FeatureConfig(mser_max_features=0)).extract(grey)
    on_large = FeatureExtractor(FeatureConfig(sift_scale=0.5, mser_max_features=0)).extract(doubled)
    assert on_large.image_size == (2 * grey.shape[1], 2 * grey.shape[0])
    np.testing.assert_allclose(on_large.keypoints_xy, (on_small.keypoints_xy + 0.5) * 2 - 0.5, atol=1e-3)
    np.testing.assert_allclose(on_large.size, on_small.size * 2, rtol=1e-5)
    np.testing.assert_array_equal(on_large.descriptors, on_small.descriptors)


def test_mser_descriptors_are_rotation_invariant(textured_image):
    grey = cv2.cvtColor(textured_image, cv2.COLOR_BGR2GRAY)
    extractor = FeatureExtractor(FeatureConfig(sift_max_features=0))
    a = extractor.extract(grey)
    b = extractor.extract(cv2.rotate(grey, cv2.ROTATE_90_CLOCKWISE))
    matcher = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True)
    matches = matcher.match(a.descriptors.astype(np.float32), b.descriptors.astype(np.float32))
    qi = np.array([m.queryIdx for m in matches])
    ti = np.array([m.trainIdx for m in matches])
    # A pixel (x, y) goes to (H - 1 - y, x) under a clockwise quarter turn.
    expected = np.stack([grey.shape[0] - 1 - a.keypoints_xy[qi, 1], a.keypoints_xy[qi, 0]], axis=1)
    correct = np.linalg.norm(expected - b.keypoints_xy[ti], axis=1) < 2.0
    assert correct.sum() >= 0.7 * len(a), f"{correct.sum()} of {len(a)} regions matched after rotation"


def test_upright_features_have_zero_angle(textured_image):
    upright = FeatureExtractor(FeatureConfig(upright=True)).extract(textured_image)
    assert len(upright) > 0
    assert np.all(upright.angle == 0)
    # One descriptor per SIFT location (no repeats for secondary orientations).
    sift = upright.of_kind(FeatureKind.SIFT)
    assert len(np.unique(np.round(np.c_[sift.keypoints_xy, sift.size], 2), axis=0)) == len(sift)


def test_mask_restricts_features(textured_image):
    height, width = textured_image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    masked = FeatureExtractor().extract(textured_image, mask)
    assert np.sum(masked.kind == FeatureKind.MSER) > 0
    assert np.all(masked.keypoints_xy[:, 0] < width // 2 + 1)


def test_spread_select_reaches_every_cell():
    rng = np.random.default_rng(3)
    crowded = rng.uniform(0, 10, (500, 2))  # all in the top-left cell, with the highest priority
    sparse = np.array([[x * 100 + 50, y * 100 + 50] for x in range(4) for y in range(4)], dtype=float)
    xy = np.vstack([crowded, sparse])
    priority = np.concatenate([np.full(500, 10.0), np.full(16, 1.0)])
    chosen = spread_select(xy, priority, 40, (400, 400), (4, 4))
    assert len(chosen) == 40
    assert set(range(501, 516)) <= set(chosen.tolist()), "each other cell's point must be chosen"
    # Under the cap everything is kept.
    np.testing.assert_array_equal(spread_select(xy, priority, 1000, (400, 400), (4, 4)), np.arange(516))


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((0, 0), np.uint8), "too small"),
        (np.zeros((100, 100), np.float32), "uint8"),
        (np.zeros((100, 100, 4), np.uint8), "shape"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_bad_images_raise_clear_errors(image, match):
    with pytest.raises(FeatureInputError, match=match):
        FeatureExtractor().extract(image)


def test_bad_mask_raises(textured_image):
    with pytest.raises(FeatureInputError, match="mask"):
        FeatureExtractor().extract(textured_image, np.ones((10, 10), np.uint8))


def test_a_blank_image_gives_an_empty_feature_set():
    blank = FeatureExtractor().extract(np.full((120, 160), 128, np.uint8))
    assert len(blank) == 0 and blank.descriptors.shape == (0, 128)


def test_config_validation():
    with pytest.raises(ValueError, match="nothing to extract"):
        FeatureConfig(sift_max_features=0, mser_max_features=0)
    with pytest.raises(ValueError):
        FeatureConfig(sift_scale=1.5)
    with pytest.raises(ValueError):
        FeatureConfig(unknown_key=1)


def test_feature_set_validation_and_array_round_trip(features):
    restored = FeatureSet.from_arrays(features.to_arrays())
    for name in ("keypoints_xy", "size", "angle", "response", "kind", "descriptors"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(features, name))
    assert restored.image_size == features.image_size
    arrays = features.to_arrays()
    arrays["descriptors"] = arrays["descriptors"].astype(np.float32)
    with pytest.raises(DescriptorError, match="descriptors"):
        FeatureSet.from_arrays(arrays)
    del arrays["kind"]
    with pytest.raises(DescriptorError, match="kind"):
        FeatureSet.from_arrays(arrays)


def test_extractor_pickles_by_config(textured_image, features):
    clone = pickle.loads(pickle.dumps(FeatureExtractor()))
    np.testing.assert_array_equal(clone.extract(textured_image).descriptors, features.descriptors)
