from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.posenet.errors import InferenceError
from geoloc_ros.posenet.preprocess import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    InputRectifier,
    InputSpec,
    network_camera,
    resize_for_network,
    to_network_tensor,
)


def test_tensor_is_rgb_nchw_normalised() -> None:
    spec = InputSpec(32, 24)
    red_bgr = np.zeros((24, 32, 3), np.uint8)
    red_bgr[..., 2] = 255
    x = to_network_tensor([red_bgr, red_bgr], spec)
    assert x.shape == (2, 3, 24, 32) and x.dtype == np.float32
    expected = [(1.0 - IMAGENET_MEAN_RGB[0]) / IMAGENET_STD_RGB[0]]
    expected += [(0.0 - IMAGENET_MEAN_RGB[c]) / IMAGENET_STD_RGB[c] for c in (1, 2)]
    np.testing.assert_allclose(x[0, :, 5, 7], expected, rtol=1e-6)


def test_tensor_equals_the_per_pixel_formula_bit_for_bit() -> None:
    """The lookup gives exactly the float32 values of (v / 255 - mean) / std per pixel."""
    spec = InputSpec(40, 30, mean_rgb=(0.4, 0.5, 0.6), std_rgb=(0.2, 0.3, 0.25))
    images = np.random.default_rng(0).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
    images[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [1, 128, 254], [7, 8, 9]]
    rgb = images[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean_rgb, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std_rgb, dtype=np.float32)
    expected = ((rgb - mean) * inv_std).transpose(0, 3, 1, 2)
    x = to_network_tensor(images, spec)
    assert x.flags.c_contiguous and x.dtype == np.float32
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(to_network_tensor([images[1]], spec)[0], expected[1])


def test_resize_and_input_checks() -> None:
    spec = InputSpec(32, 24)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    small = resize_for_network(image, spec)
    assert small.shape == (24, 32, 3) and small.dtype == np.uint8
    with pytest.raises(InferenceError, match="uint8"):
        resize_for_network(image.astype(np.float32), spec)
    with pytest.raises(InferenceError, match=r"\(H, W, 3\)"):
        resize_for_network(image[..., 0], spec)
    with pytest.raises(InferenceError, match="resize first"):
        to_network_tensor([image], spec)
    with pytest.raises(InferenceError, match="at least 16x16"):
        InputSpec(8, 8)


def test_network_camera_scales_intrinsics_per_axis() -> None:
    camera = PinholeCamera.from_hfov(640, 480, 60.0)
    small = network_camera(camera, InputSpec(224, 168))
    assert small.hfov_deg == pytest.approx(60.0, abs=1e-6)
    assert small.cx == pytest.approx(111.5) and small.cy == pytest.approx(83.5)


def test_rectifier_maps_a_distorted_wider_camera_onto_the_model_camera() -> None:
    model_camera = PinholeCamera.from_hfov(640, 480, 60.0)
    input_camera = PinholeCamera(
        800, 600, 600.0, 600.0, 399.5, 299.5, "plumb_bob", (-0.2, 0.05, 0.0, 0.0, 0.0)
    )
    spec = InputSpec(64, 48)
    rectifier = InputRectifier(input_camera, model_camera, spec)
    # A bright dot on the optical axis must land on the model camera's principal point.
    image = np.zeros((600, 800, 3), np.uint8)
    image[290:310, 390:410] = 255
    out = rectifier(image)
    assert out.shape == (48, 64, 3)
    ys, xs = np.nonzero(out[..., 0] > 100)
    assert abs(xs.mean() - 31.5) < 1.0 and abs(ys.mean() - 23.5) < 1.0
    with pytest.raises(InferenceError, match="input camera is 800x600"):
        rectifier(np.zeros((480, 640, 3), np.uint8))
