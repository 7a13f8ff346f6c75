"""Geometric exactness of the renderer: known points land on predicted pixels with the right depth
and texture colour, in pinhole views and panoramas, and panorama depth re-projects into a camera
frame rendered elsewhere."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import optical_pose_from_body
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.equirect import direction_to_pixel, pixel_to_direction, range_to_points
from geoloc_ros.sim.errors import SimError
from geoloc_ros.sim.render import Conditions, render_panorama, render_pinhole
from geoloc_ros.sim.town import EPOCH_CAPTURE, QuadKind, Town


def _facade_in_front(town: Town, min_width: float = 8.0) -> int:
    """A capture-epoch façade wide enough to look at from its front."""
    q = town.quads
    ok = (q.kind == QuadKind.FACADE) & (q.size[:, 0] >= min_width) & ((q.epochs & EPOCH_CAPTURE) != 0)
    return int(np.nonzero(ok)[0][0])


def _viewer_facing(
    town: Town, quad: int, distance: float, height: float, lateral: float = 0.0
) -> tuple[Pose3D, np.ndarray]:
    """Body pose ``distance`` in front of the quad's centre, looking at it; returns (T_map_body, target)."""
    q = town.quads
    target = q.origin[quad] + q.axis_s[quad] * q.size[quad, 0] / 2 + q.axis_t[quad] * 2.5
    n = q.normal[quad]
    eye = target + n * distance + q.axis_s[quad] * lateral
    eye[2] = height
    look = target - eye
    yaw = math.atan2(look[1], look[0])
    pitch = -math.atan2(look[2], math.hypot(look[0], look[1]))
    return Pose3D.from_xyz_ypr(eye, yaw, pitch), target


def _texture_colour(town: Town, quad: int, points: np.ndarray) -> np.ndarray:
    """Bilinear colour of the quad's level-0 texture at world points on its plane."""
    q = town.quads
    pyramid = town.quad_texture(quad)
    tw, th = pyramid.sizes[0]
    w_m, h_m = q.size[quad]
    rel = points - q.origin[quad]
    s = rel @ q.axis_s[quad]
    t = rel @ q.axis_t[quad]
    tu = s * tw / w_m + 0.5  # padded texel coordinates (texel j centre at s = (j + 0.5) w / tw)
    tv = (h_m - t) * th / h_m + 0.5
    level = pyramid.levels[0][:, :, :3]
    out = cv2.remap(
        level, tu.astype(np.float32).reshape(-1, 1), tv.astype(np.float32).reshape(-1, 1), cv2.INTER_LINEAR
    )
    return out.reshape(-1, 3).astype(float)


def _ray_plane(town: Town, quad: int, centre: np.ndarray, rays: np.ndarray) -> np.ndarray:
    q = town.quads
    n = q.normal[quad]
    t = (n @ (q.origin[quad] - centre)) / (rays @ n)
    return centre + t[:, None] * rays


@pytest.mark.parametrize("distorted", [False, True])
def test_known_point_projects_to_predicted_pixel_in_camera(clear_town: Town, distorted: bool) -> None:
    tiny_town = clear_town
    quad = _facade_in_front(tiny_town)
    body, target = _viewer_facing(tiny_town, quad, distance=9.0, height=1.6)
    T_map_optical = optical_pose_from_body(body)
    camera = PinholeCamera.from_hfov(640, 480, 57.6)
    if distorted:
        camera = PinholeCamera(
            640,
            480,
            camera.fx,
            camera.fy,
            camera.cx + 3,
            camera.cy - 2,
            "plumb_bob",
            (-0.12, 0.05, 0.0005, -0.0003, 0.0),
        )
    image, zdepth = render_pinhole(tiny_town, camera, T_map_optical, Conditions.flat())
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert zdepth.shape == (480, 640) and zdepth.dtype == np.float32
    # The façade point seen at the image centre projects where the camera model says, at its depth.
    p_opt = T_map_optical.inverse().transform_points(target[None])[0]
    uv, front = camera.project(p_opt[None])
    assert front[0]
    u, v = uv[0]
    ui, vi = round(u), round(v)
    assert 0 <= ui < 640 and 0 <= vi < 480
    # Depth at the nearest pixel centre equals the plane depth along that pixel's own ray.
    ray = camera.normalized_rays(np.array([[ui, vi]], float))[0]
    ray_world = T_map_optical.rotation @ ray
    hit = _ray_plane(tiny_town, quad, T_map_optical.translation, ray_world[None])[0]
    expected_z = float((T_map_optical.inverse().transform_points(hit[None]))[0, 2])
    assert zdepth[vi, ui] == pytest.approx(expected_z, abs=2e-3)
    assert zdepth[vi, ui] == pytest.approx(p_opt[2], rel=0.02)
    # Colours of a patch around it are the texture's colours where each pixel's ray meets the wall.
    us, vs = np.meshgrid(np.arange(ui - 40, ui + 41, 4), np.arange(vi - 30, vi + 31, 4))
    pix = np.column_stack([us.ravel(), vs.ravel()]).astype(float)
    rays = T_map_optical.rotation @ camera.normalized_rays(pix).T
    hits = _ray_plane(tiny_town, quad, T_map_optical.translation, rays.T)
    expected = _texture_colour(tiny_town, quad, hits)
    rendered = image[vs.ravel(), us.ravel()].astype(float)
    mad = np.abs(rendered - expected).mean()
    assert mad < 3.0, f"mean absolute colour difference {mad:.2f}"  # measured: 0.0 (0.9 distorted)


def test_known_point_projects_to_predicted_pixel_in_panorama(clear_town: Town) -> None:
    tiny_town = clear_town
    quad = _facade_in_front(tiny_town)
    body, target = _viewer_facing(tiny_town, quad, distance=8.0, height=2.5, lateral=3.0)
    # A rotated, tilted rig: the pixel must still follow the public equirectangular convention.
    body = Pose3D.from_xyz_ypr(body.translation, body.yaw + 0.7, math.radians(1.5), math.radians(-1.0))
    width = 1024
    image, rng = render_panorama(tiny_town, body, width, Conditions.flat())
    assert image.shape == (512, 1024, 3) and rng.shape == (512, 1024)
    d_body = body.rotation.T @ (target - body.translation)
    u, v = direction_to_pixel(d_body, width, width // 2)
    ui, vi = round(float(u)) % width, round(float(v))
    d_pix = pixel_to_direction(ui, vi, width, width // 2)
    hit = _ray_plane(tiny_town, quad, body.translation, (body.rotation @ d_pix)[None])[0]
    assert rng[vi, ui] == pytest.approx(np.linalg.norm(hit - body.translation), abs=2e-3)
    assert rng[vi, ui] == pytest.approx(np.linalg.norm(target - body.translation), rel=0.02)
    us, vs = np.meshgrid(np.arange(ui - 24, ui + 25, 3), np.arange(vi - 16, vi + 17, 3))
    dirs = pixel_to_direction(us.ravel(), vs.ravel(), width, width // 2) @ body.rotation.T
    hits = _ray_plane(tiny_town, quad, body.translation, dirs)
    expected = _texture_colour(tiny_town, quad, hits)
    rendered = image[vs.ravel(), us.ravel() % width].astype(float)
    mad = np.abs(rendered - expected).mean()
    assert mad < 6.0, f"mean absolute colour difference {mad:.2f}"  # measured: 2.9


def test_sky_has_zero_depth_and_ground_has_height_range(tiny_town: Town) -> None:
    body = Pose3D.from_xyz_ypr([0.0, 0.0, 2.5], 0.3)
    _, rng = render_panorama(tiny_town, body, 256, Conditions.flat())
    assert np.all(rng[0] == 0.0)  # zenith row: sky
    # Straight down: the ground 2.5 m below.
    assert rng[-1].mean() == pytest.approx(2.5, rel=0.01)


def test_panorama_depth_reprojects_into_a_camera_frame_rendered_elsewhere(tiny_town: Town) -> None:
    """Back-project panorama pixels with their range, project them into a pinhole camera 3 m away,
    and compare colours where the point is visible from the camera (same light on both)."""
    quad = _facade_in_front(tiny_town)
    pano_body, _ = _viewer_facing(tiny_town, quad, distance=10.0, height=2.5)
    width = 2048
    conditions = Conditions.at_hour(11.0, 0.0, EPOCH_CAPTURE)
    pano, rng = render_panorama(tiny_town, pano_body, width, conditions)
    cam_body = Pose3D.from_xyz_ypr(
        pano_body.translation + pano_body.rotation @ np.array([2.0, 2.0, -1.0]),
        pano_body.yaw - 0.15,
        math.radians(2.0),
    )
    T_map_optical = optical_pose_from_body(cam_body)
    camera = PinholeCamera.from_hfov(640, 480, 57.6)
    frame, zdepth = render_pinhole(tiny_town, camera, T_map_optical, conditions)
    points_body = range_to_points(rng)
    valid = np.isfinite(points_body[..., 0])
    world = pano_body.transform_points(points_body[valid])
    colours = pano[valid].astype(float)
    p_opt = T_map_optical.inverse().transform_points(world)
    uv, front = camera.project(p_opt)
    inside = front & (uv[:, 0] >= 0) & (uv[:, 0] <= 639) & (uv[:, 1] >= 0) & (uv[:, 1] <= 479)
    uv, p_opt, colours = uv[inside], p_opt[inside], colours[inside]
    ui, vi = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    visible = np.abs(zdepth[vi, ui] - p_opt[:, 2]) < 0.03 * p_opt[:, 2]
    assert visible.sum() > 20000, "too few panorama points visible in the camera frame"
    coords = [uv[visible, 1], uv[visible, 0]]
    sampled = np.stack(
        [map_coordinates(frame[:, :, c].astype(float), coords, order=1) for c in range(3)], axis=1
    )
    mad = np.abs(sampled.astype(float) - colours[visible]).mean()
    # Both images resample the same textures at different scales (mip levels, bilinear); measured 1.1.
    assert mad < 5.0, f"mean absolute colour difference {mad:.2f} over {visible.sum()} points"


def test_render_rejects_bad_arguments(tiny_town: Town) -> None:
    with pytest.raises(SimError, match="width"):
        render_panorama(tiny_town, Pose3D.identity(), 101, Conditions.flat())
    with pytest.raises(SimError, match="epoch"):
        Conditions(epoch=5)
    with pytest.raises(SimError, match="sun_direction"):
        Conditions(sun_direction=(1.0, 1.0, 0.0))
