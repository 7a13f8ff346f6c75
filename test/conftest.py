"""Shared pytest fixtures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from geoloc_ros.mapping.config import MapBuildConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("GEOLOC_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The team's shared real-data folder (../shared); tests using it skip when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent (set GEOLOC_SHARED_DIR to point to it)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _ros_loopback_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """ROS tests: loopback-only discovery (a safety net under tools' network namespace) and a domain id
    of their own, so parallel test runs on one machine never see each other's topics."""
    if request.node.get_closest_marker("ros") is None:
        return
    from geoloc_ros.nodes.isolation import LOOPBACK_ENV

    for key, value in LOOPBACK_ENV.items():
        monkeypatch.setenv(key, value)
    if "ROS_DOMAIN_ID" not in os.environ:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


@pytest.fixture(scope="session")
def tiny_sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` scenario generated once per test session (panoramas/, drive/, scenario.yaml)."""
    from geoloc_ros.sim.generate import generate
    from geoloc_ros.sim.scenario import preset

    out = tmp_path_factory.mktemp("tiny_sim") / "tiny"
    generate(preset("tiny"), out, seed=1, workers=2)
    return out


def tiny_map_build_config() -> MapBuildConfig:
    """Build settings of :func:`tiny_map_dir`: the defaults, with vocabularies sized for 8 panoramas."""
    from geoloc_ros.mapping.config import MapBuildConfig

    vocabulary = {"n_iter": 10, "quantizer": "ivf"}
    return MapBuildConfig.model_validate(
        {
            "vocabulary": {"sift": {**vocabulary, "n_words": 2000}, "mser": {**vocabulary, "n_words": 600}},
            "parallel": {"workers": 1},
        }
    )


@pytest.fixture(scope="session")
def tiny_map_config() -> MapBuildConfig:
    """:func:`tiny_map_build_config` for tests that build maps of their own tiny panorama sets."""
    return tiny_map_build_config()


@pytest.fixture(scope="session")
def tiny_map_dir(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The map bundle of the ``tiny`` scenario (views in the drive camera's model), built once per session."""
    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.mapping.build import build_map

    out = tmp_path_factory.mktemp("tiny_map") / "map"
    camera = PinholeCamera.load(tiny_sim_dir / "drive" / "camera.yaml")
    build_map(tiny_sim_dir / "panoramas", out, tiny_map_build_config(), camera=camera, workers=1)
    return out


def tiny_train_config(**overrides: object):
    """A seconds-long PoseNet training config: tiny from-scratch backbone on 64x48 inputs."""
    from geoloc_ros.posenet.train import TrainConfig

    base: dict = {
        "epochs": 3,
        "batch_size": 8,
        "cache_copies": 2,
        "val_fraction": 0.2,
        "model": {
            "backbone": "tiny",
            "pretrained": False,
            "input_width": 64,
            "input_height": 48,
            "freeze_stages": 1,
        },
    }
    base.update(overrides)
    return TrainConfig.model_validate(base)


@pytest.fixture(scope="session", name="tiny_train_config")
def tiny_train_config_fixture():
    """:func:`tiny_train_config` for other conftest modules (conftests do not import each other)."""
    return tiny_train_config


@pytest.fixture(scope="session")
def tiny_posenet_model(tmp_path_factory: pytest.TempPathFactory):
    """A seconds-to-train PoseNet (tiny from-scratch backbone, 64x48 input) exported to ONNX.

    Only the node plumbing is under test here, not accuracy: the views are random textures.
    """
    import numpy as np
    import torch

    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.geometry.frames import optical_pose_from_body
    from geoloc_ros.geometry.pose import Pose3D
    from geoloc_ros.posenet.dataset import ArrayViewSource
    from geoloc_ros.posenet.export import export_onnx
    from geoloc_ros.posenet.train import train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    camera = PinholeCamera.from_hfov(160, 120, 57.6)
    images = rng.integers(0, 255, (24, 120, 160, 3), dtype=np.uint8)
    poses = [
        optical_pose_from_body(
            Pose3D.from_xyz_ypr([rng.uniform(-20, 20), rng.uniform(-5, 5), 1.5], rng.uniform(-3, 3))
        )
        for _ in range(24)
    ]
    groups = [f"p{i // 4}" for i in range(24)]
    config = tiny_train_config(epochs=1, cache_copies=1)
    out = tmp_path_factory.mktemp("posenet_node")
    result = train(ArrayViewSource(images, poses, groups, camera), out / "run", config)
    return export_onnx(result.run_dir, out / "model.onnx").path


@pytest.fixture(scope="session")
def tiny_map_model(tiny_map_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny network trained for two epochs on the ``tiny`` map bundle's views, exported (FP32).

    It records the bundle's origin, so drive evaluation needs no map, and the bundle's id.
    """
    import torch

    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.posenet.export import export_onnx
    from geoloc_ros.posenet.train import train

    torch.set_num_threads(1)
    bundle = MapBundle.open(tiny_map_dir, verify="sizes")
    out = tmp_path_factory.mktemp("tiny_map_model")
    train(
        bundle.view_source(),
        out / "run",
        tiny_train_config(epochs=2),
        map_origin=bundle.origin,
        data_info={"map_id": bundle.bundle_id},  # what training_source records for a bundle
    )
    return export_onnx(out / "run", out / "model.onnx").path


# ------------------------------------------------------------------------------------- rclpy helpers
@pytest.fixture
def ros_context() -> Iterator[object]:
    """A fresh rclpy context for one test (nodes and executors take it explicitly)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


def _spin_until(executor, condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=0.02)
    return condition()


@pytest.fixture
def spin_until() -> Callable[..., bool]:
    """``spin_until(executor, condition, timeout_s=20)``: spin until ``condition()`` holds (or time out)."""
    return _spin_until


@pytest.fixture(scope="session")
def node_parameters() -> dict[str, set[str]]:
    """Every parameter each node declares (dotted names), from its config model."""
    from geoloc_ros.nodes.bovw_localizer import BovwNodeConfig
    from geoloc_ros.nodes.camera_ingest import CameraIngestConfig
    from geoloc_ros.nodes.common import _flatten_fields
    from geoloc_ros.nodes.pose_fusion import PoseFusionNodeConfig
    from geoloc_ros.nodes.posenet_localizer import PoseNetNodeConfig

    models = {
        "camera_ingest": CameraIngestConfig,
        "bovw_localizer": BovwNodeConfig,
        "posenet_localizer": PoseNetNodeConfig,
        "pose_fusion": PoseFusionNodeConfig,
    }
    return {node: {name for name, _, _ in _flatten_fields(model)} for node, model in models.items()}


@pytest.fixture(scope="session")
def tiny_perturbed(
    tiny_sim_dir: Path, tiny_map_config: MapBuildConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The ``tiny`` panoramas re-stated with a seeded metadata error (σ 0.7 m per axis, 1°, stated in
    the records) and mapped: ``(map dir, dir holding the true poses' panoramas_truth.jsonl)``."""
    import json
    import os
    import shutil

    import numpy as np

    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.geo.enu import enu_to_geodetic
    from geoloc_ros.gis.panorama_set import INDEX_NAME, ORIGIN_NAME, PANORAMAS_TRUTH, PanoramaSet
    from geoloc_ros.mapping.build import build_map

    root = tmp_path_factory.mktemp("tiny_perturbed")
    source = tiny_sim_dir / "panoramas"
    pano_set = PanoramaSet.load(source)
    rng = np.random.default_rng(11)
    out = root / "panoramas"
    out.mkdir()
    shutil.copyfile(source / ORIGIN_NAME, out / ORIGIN_NAME)
    os.symlink((source / "images").resolve(), out / "images")
    lines = []
    for record, position in zip(pano_set.records, pano_set.positions_enu(), strict=True):
        d = rng.normal(size=3) * np.array([0.7, 0.7, 1.0])
        lat, lon, alt = enu_to_geodetic(position + np.array([d[0], d[1], 0.0]), pano_set.origin)
        update = {"lat": float(lat), "lon": float(lon), "alt": float(alt)}
        update.update({"heading_deg": (record.heading_deg + d[2]) % 360.0})
        update.update({"position_sigma_m": 0.7, "heading_sigma_deg": 1.0})
        lines.append(json.dumps(record.model_copy(update=update).to_json()))
    (out / INDEX_NAME).write_text("\n".join(lines) + "\n")
    shutil.copyfile(tiny_sim_dir / PANORAMAS_TRUTH, root / PANORAMAS_TRUTH)
    camera = PinholeCamera.load(tiny_sim_dir / "drive" / "camera.yaml")
    build_map(out, root / "map", tiny_map_config, camera=camera, workers=1)
    return root / "map", root
