"""Query frames: rectification into the map camera, size checks, MSER on demand."""

import cv2
import numpy as np
import pytest

from geoloc_ros.bovw.features import FeatureConfig, FeatureKind
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.localize.config import QueryFeaturesConfig
from geoloc_ros.localize.errors import QueryFrameError
from geoloc_ros.localize.query import QueryPreparer, query_feature_config

MAP_CAMERA = PinholeCamera.from_hfov(320, 240, 57.6)


def textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((240, 320, 3), 90, np.uint8)
    for _ in range(120):
        centre = (int(rng.integers(0, 320)), int(rng.integers(0, 240)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(image, centre, int(rng.integers(3, 14)), colour, -1)
    return image


def test_query_config_keeps_the_maps_settings_but_our_caps():
    map_config = FeatureConfig(mser_delta=5, upright=True)
    fast = query_feature_config(map_config, QueryFeaturesConfig(sift_max_features=300, sift_scale=0.4))
    assert (fast.sift_max_features, fast.sift_scale, fast.mser_delta, fast.upright) == (300, 0.4, 5, True)
    full = query_feature_config(map_config, QueryFeaturesConfig(fast=False))
    assert full.sift_scale == map_config.sift_scale


def test_frames_are_rectified_into_the_map_camera():
    distorted = PinholeCamera(320, 240, 280.0, 280.0, 161.0, 119.0, distortion=(-0.2, 0.05, 0.0, 0.0, 0.0))
    preparer = QueryPreparer(MAP_CAMERA, FeatureConfig(), distorted)
    image = textured()
    grey = preparer.rectify(image)
    expected = cv2.remap(
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), *distorted.rectify_maps(MAP_CAMERA), cv2.INTER_LINEAR
    )
    np.testing.assert_array_equal(grey, expected)
    same = QueryPreparer(MAP_CAMERA, FeatureConfig())
    np.testing.assert_array_equal(same.rectify(image), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    with pytest.raises(QueryFrameError, match="160x120 but its camera model is 320x240"):
        preparer.rectify(image[:120, :160])
    with pytest.raises(QueryFrameError, match="uint8"):
        preparer.rectify(image.astype(np.float32))


def test_mser_is_added_on_demand_and_stripped_for_tracking():
    preparer = QueryPreparer(MAP_CAMERA, FeatureConfig(sift_max_features=200, mser_max_features=50))
    frame = preparer.prepare(textured(1), 5, with_on_demand=False)
    assert not frame.has_on_demand
    assert np.all(frame.features.kind == FeatureKind.SIFT) and len(frame.features) > 20
    with_mser = preparer.add_on_demand(frame)
    assert with_mser.has_on_demand and np.any(with_mser.features.kind == FeatureKind.MSER)
    assert preparer.add_on_demand(with_mser) is with_mser
    # The same features as extracting both at once, whoever extracts them when.
    both = preparer.prepare(textured(1), 5, with_on_demand=True)
    np.testing.assert_array_equal(both.features.descriptors, with_mser.features.descriptors)
    stripped = with_mser.without_on_demand()
    np.testing.assert_array_equal(stripped.features.descriptors, frame.features.descriptors)
