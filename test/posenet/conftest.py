"""Fixtures of the PoseNet tests: synthetic views of a textured round plaza.

The world is a cylindrical wall of radius 30 m around the origin with a smooth random colour
texture along its circumference and horizontal bands, a chequered ground and a sky gradient, so
an image depends on the camera's position (parallax, ground pattern) and heading. Rendering is
vectorised numpy (a few ms per small image). Tests reach the helpers through the ``synth``
fixture (conftest modules are not importable by name reliably when several exist).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import optical_pose_from_body
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.posenet.dataset import ArrayViewSource
from geoloc_ros.posenet.export import export_onnx
from geoloc_ros.posenet.train import TrainConfig, TrainResult, train

WALL_RADIUS = 30.0
WALL_HEIGHT = 8.0
CAMERA_HEIGHT = 2.0


def _wall_colour(phi: np.ndarray, rng_seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    colour = np.zeros((*phi.shape, 3))
    for channel in range(3):
        for freq in (1, 2, 3, 5, 8, 13, 21):
            colour[..., channel] += (
                rng.uniform(0.3, 1.0) / np.sqrt(freq) * np.sin(freq * phi + rng.uniform(0, 6.3))
            )
    return 128 + 45 * colour


def render_view(camera: PinholeCamera, x: float, y: float, yaw: float) -> np.ndarray:
    """BGR uint8 image of the plaza seen from ``(x, y)`` at camera height, heading ``yaw``."""
    u = np.arange(camera.width, dtype=float)
    v = np.arange(camera.height, dtype=float)
    theta = yaw + np.arctan((camera.cx - u) / camera.fx)  # left of centre = larger yaw
    dx, dy = np.cos(theta), np.sin(theta)
    pd = x * dx + y * dy
    t_wall = -pd + np.sqrt(pd**2 - (x * x + y * y) + WALL_RADIUS**2)
    phi = np.arctan2(y + t_wall * dy, x + t_wall * dx)
    wall = _wall_colour(phi)  # (W, 3)
    # Horizontal distance scales with the column's obliquity; elevation per row.
    obliquity = np.sqrt(1.0 + ((camera.cx - u) / camera.fx) ** 2)
    tan_e = (camera.cy - v)[:, None] / camera.fy / obliquity[None, :]
    height = CAMERA_HEIGHT + t_wall[None, :] * tan_e
    image = np.empty((camera.height, camera.width, 3))
    band = 0.75 + 0.25 * np.sign(np.sin(height * 2.2))
    image[:] = wall[None, :, :] * band[..., None]
    sky = height > WALL_HEIGHT
    image[sky] = np.array([235.0, 200.0, 150.0])
    ground = tan_e < 0
    t_ground = np.where(ground, CAMERA_HEIGHT / np.maximum(-tan_e, 1e-9), np.inf)
    ground &= t_ground < t_wall[None, :]
    t_ground = np.where(ground, t_ground, 0.0)
    gx = x + t_ground * dx[None, :]
    gy = y + t_ground * dy[None, :]
    checker = (np.floor(gx / 2.0) + np.floor(gy / 2.0)) % 2
    ground_colour = np.stack([60 + 40 * checker, 90 + 30 * checker, 80 + 60 * checker], axis=-1)
    image[ground] = ground_colour[ground]
    return np.clip(image, 0, 255).astype(np.uint8)


def view_pose(x: float, y: float, yaw: float) -> Pose3D:
    """``T_map_optical`` of a level camera at ``(x, y)``, camera height, heading ``yaw``."""
    return optical_pose_from_body(Pose3D.from_xyz_ypr([x, y, CAMERA_HEIGHT], yaw))


def make_views(
    n_groups: int = 6,
    views_per_group: int = 8,
    width: int = 64,
    height: int = 48,
    spacing_m: float = 4.0,
    seed: int = 0,
) -> ArrayViewSource:
    """Panorama-like groups along a street (x axis), each with views at evenly spread headings."""
    camera = PinholeCamera.from_hfov(width, height, 60.0)
    rng = np.random.default_rng(seed)
    images, poses, groups = [], [], []
    for g in range(n_groups):
        gx = (g - (n_groups - 1) / 2) * spacing_m
        gy = rng.uniform(-1.0, 1.0)
        for k in range(views_per_group):
            yaw = -np.pi + 2 * np.pi * k / views_per_group + rng.uniform(-0.1, 0.1)
            images.append(render_view(camera, gx, gy, yaw))
            poses.append(view_pose(gx, gy, yaw))
            groups.append(f"pano_{g:03d}")
    return ArrayViewSource(np.stack(images), poses, groups, camera)


@pytest.fixture(scope="session")
def synth(tiny_train_config: Callable[..., TrainConfig]) -> SimpleNamespace:
    """The synthetic-scene helpers: make_views, render_view, view_pose, tiny_config."""
    return SimpleNamespace(
        make_views=make_views, render_view=render_view, view_pose=view_pose, tiny_config=tiny_train_config
    )


@pytest.fixture
def synthetic_views() -> Callable[..., ArrayViewSource]:
    return make_views


@pytest.fixture(scope="session")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_train_config: Callable[..., TrainConfig]
) -> TrainResult:
    """One tiny training run shared by the export and inference tests."""
    torch.set_num_threads(1)
    return train(make_views(), tmp_path_factory.mktemp("posenet") / "run", tiny_train_config())


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny run exported as FP32, FP16 and FP16-weights ONNX."""
    out = tmp_path_factory.mktemp("onnx")
    return {
        "fp32": export_onnx(tiny_run.run_dir, out / "fp32.onnx").path,
        "fp16": export_onnx(tiny_run.run_dir, out / "fp16.onnx", fp16=True).path,
        "fp16-weights": export_onnx(tiny_run.run_dir, out / "fp16w.onnx", fp16_weights=True).path,
    }
