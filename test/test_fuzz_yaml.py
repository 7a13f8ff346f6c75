"""Fuzzing the YAML boundary: every YAML the project reads refuses NaN / infinite numbers, wrong
types, unknown keys and malformed documents with a clear error naming the file and field."""

from __future__ import annotations

import pytest
import yaml

from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.errors import ConfigError, GeolocError
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.localize.config import load_localizer_config
from geoloc_ros.mapping.build import load_build_config

NON_FINITE = [".nan", ".inf", "-.inf", "NaN"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(
    "loader, text, field",
    [
        (CameraMounting.load, "translation: [{v}, 0.0, 0.0]\n", "translation.0"),
        (CameraMounting.load, "pitch_deg: {v}\n", "pitch_deg"),
        (FusionConfig.load, "history_s: {v}\n", "history_s"),
        (FusionConfig.load, "pose_sources: {{bovw: {{covariance_scale: {v}}}}}\n", "covariance_scale"),
        (FusionConfig.load, "process_noise: {{longitudinal_accel: {v}}}\n", "longitudinal_accel"),
        (load_localizer_config, "pose: {{reprojection_threshold_px: {v}}}\n", "reprojection_threshold_px"),
        (load_build_config, "tiles: {{tile_size_m: {v}}}\n", "tile_size_m"),
    ],
)
def test_non_finite_numbers_are_refused_naming_file_and_field(tmp_path, loader, text, field, value):
    path = tmp_path / "input.yaml"
    path.write_text(text.format(v=value))
    with pytest.raises(ConfigError, match=rf"input\.yaml: .*{field}"):
        loader(path)


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("key", ["fx", "cx", "k1"])
def test_camera_calibration_yaml_refuses_non_finite_values(tmp_path, key, value):
    data = {
        "image_width": 640,
        "image_height": 480,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [500.0, 0, 320.0, 0, 500.0, 240.0, 0, 0, 1]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5},
    }
    broken = {**data}
    if key == "k1":
        broken["distortion_coefficients"] = {**data["distortion_coefficients"], "data": ["X", 0, 0, 0, 0]}
    else:
        matrix = list(data["camera_matrix"]["data"])
        matrix[0 if key == "fx" else 2] = "X"
        broken["camera_matrix"] = {**data["camera_matrix"], "data": matrix}
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(broken).replace("X", value))
    with pytest.raises(CameraModelError, match=r"camera\.yaml"):
        PinholeCamera.load(path)


@pytest.mark.parametrize(
    "text",
    [
        "translation: [1, 2]\n",  # wrong length
        "translation: one\n",  # wrong type
        "unknown_key: 1\n",  # unknown key
        "- a\n- b\n",  # not a mapping
        "translation: [1, 2, 3\n",  # malformed YAML
        "pitch_deg: 1e400\n",  # overflows to inf
        "\x00\x01binary",  # not text YAML
    ],
)
def test_malformed_camera_mounting_yaml_is_a_clear_error(tmp_path, text):
    path = tmp_path / "camera_mounting.yaml"
    path.write_text(text)
    with pytest.raises(GeolocError, match=r"camera_mounting\.yaml"):
        CameraMounting.load(path)
