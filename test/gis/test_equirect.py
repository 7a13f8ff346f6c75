"""Equirectangular maths: the public-format convention, round trips, the body pose."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.gis.equirect import (
    direction_columns_to_pixel,
    direction_to_pixel,
    panorama_body_pose,
    panorama_direction_grid,
    pixel_to_direction,
    range_to_points,
)

W, H = 360, 180


@pytest.mark.parametrize(
    ("u", "v", "expected"),
    [
        (W / 2, H / 2 - 0.5, (1.0, 0.0, 0.0)),  # centre column at the horizon: along the heading
        (W / 4, H / 2 - 0.5, (0.0, 1.0, 0.0)),  # a quarter turn to the left (azimuth grows rightwards)
        (3 * W / 4, H / 2 - 0.5, (0.0, -1.0, 0.0)),  # to the right
        (0.0, H / 2 - 0.5, (-1.0, 0.0, 0.0)),  # the seam looks backwards
        (W / 2, -0.5, (0.0, 0.0, 1.0)),  # the top edge is the zenith
        (W / 2, H - 0.5, (0.0, 0.0, -1.0)),  # the bottom edge is the nadir
    ],
)
def test_pixel_to_direction_follows_the_public_format(
    u: float, v: float, expected: tuple[float, ...]
) -> None:
    np.testing.assert_allclose(pixel_to_direction(u, v, W, H), expected, atol=1e-12)


def test_row_centres_sample_elevation_uniformly() -> None:
    d = pixel_to_direction(np.zeros(H), np.arange(H), W, H)
    elevation = np.degrees(np.arcsin(d[:, 2]))
    np.testing.assert_allclose(elevation, 90.0 - (np.arange(H) + 0.5), atol=1e-9)


def test_round_trip_and_seam_wrap() -> None:
    rng = np.random.default_rng(0)
    u = rng.uniform(0, W, 500)
    v = rng.uniform(0, H - 1, 500)
    back_u, back_v = direction_to_pixel(pixel_to_direction(u, v, W, H) * 7.5, W, H)  # any length
    np.testing.assert_allclose(back_u, u, atol=1e-9)
    np.testing.assert_allclose(back_v, v, atol=1e-9)
    # Just across the seam on either side, u wraps into [0, W).
    left_of_seam = pixel_to_direction(-0.25, 10.0, W, H)
    assert direction_to_pixel(left_of_seam, W, H)[0] == pytest.approx(W - 0.25)
    assert 0.0 <= direction_to_pixel([-1.0, 0.0, 0.0], W, H)[0] < W


def test_float32_columns_agree_with_direction_to_pixel() -> None:
    width, height = 16384, 8192  # the largest panoramas: float32 must stay well inside a pixel
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(2000, 3)) * rng.uniform(0.1, 80.0, size=(2000, 1))
    u, v = direction_to_pixel(directions, width, height)
    x, y, z = directions.astype(np.float32).T
    u32, v32, length = direction_columns_to_pixel(x, y, z, width, height)
    assert u32.dtype == v32.dtype == length.dtype == np.float32
    # Same pixel up to 1/100 px, u equal modulo the seam (W is the seam, not wrapped to 0).
    seam_gap = np.abs(np.mod(u32 - u + width / 2, width) - width / 2)
    assert seam_gap.max() < 0.01 and np.all((u32 >= 0) & (u32 <= width))
    np.testing.assert_allclose(v32, v, atol=0.01)
    np.testing.assert_allclose(length, np.linalg.norm(directions, axis=1), rtol=1e-6)


def test_direction_grid_is_unit_and_matches_pixels() -> None:
    grid = panorama_direction_grid(W, H)
    assert grid.shape == (H, W, 3)
    np.testing.assert_allclose(np.linalg.norm(grid, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(grid[37, 101], pixel_to_direction(101, 37, W, H))


@pytest.mark.parametrize(
    ("heading", "east_north"), [(0.0, (0.0, 1.0)), (90.0, (1.0, 0.0)), (225.0, (-0.7071, -0.7071))]
)
def test_body_pose_heading_is_a_compass_bearing(heading: float, east_north: tuple[float, float]) -> None:
    pose = panorama_body_pose([1.0, 2.0, 3.0], heading)
    forward = pose.rotation[:, 0]
    np.testing.assert_allclose(forward[:2], east_north, atol=1e-4)
    assert forward[2] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(pose.rotation[:, 2], [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(pose.translation, [1.0, 2.0, 3.0])
    # Column W/4 looks to the left of the heading: compass heading - 90°.
    left = pose.rotation @ pixel_to_direction(W / 4, H / 2 - 0.5, W, H)
    b = math.radians(heading - 90.0)
    np.testing.assert_allclose(left[:2], [math.sin(b), math.cos(b)], atol=1e-4)


def test_body_pose_pitch_tilts_forward_down() -> None:
    pose = panorama_body_pose(np.zeros(3), 0.0, pitch_deg=10.0)
    forward = pose.rotation[:, 0]
    assert forward[2] == pytest.approx(-math.sin(math.radians(10.0)))


def test_range_to_points() -> None:
    depth = np.full((H, W), 4.0)
    depth[0, :] = 0.0
    points = range_to_points(depth)
    assert points.shape == (H, W, 3)
    assert np.isnan(points[0]).all()
    np.testing.assert_allclose(np.linalg.norm(points[1:], axis=-1), 4.0)
    np.testing.assert_allclose(points[H // 2, W // 2], 4.0 * pixel_to_direction(W // 2, H // 2, W, H))
    with pytest.raises(ValueError, match=f"depth is {W}x{H}, expected 100x50"):
        range_to_points(depth, 100, 50)
