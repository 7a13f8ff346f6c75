from __future__ import annotations

from pathlib import Path

import pytest

from geoloc_ros.errors import ConfigError
from geoloc_ros.fusion import FusionConfig


def test_defaults_cover_the_project_sources() -> None:
    cfg = FusionConfig()
    assert set(cfg.pose_sources) == {"bovw", "posenet", "posenet_temporal"}
    assert set(cfg.position_sources) == {"gps"} and set(cfg.motion_sources) == {"odometry", "imu"}
    assert cfg.backward_jump_reset_s >= cfg.history_s


def test_yaml_is_loaded_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "fusion.yaml"
    path.write_text(
        "gate_probability: 0.99\n"
        "process_noise: {longitudinal_accel: 2.0}\n"
        "pose_sources:\n  bovw: {covariance_scale: 2.0, reinit_after_rejections: 5}\n"
    )
    cfg = FusionConfig.load(path)
    assert cfg.gate_probability == 0.99 and cfg.process_noise.longitudinal_accel == 2.0
    assert cfg.pose_sources["bovw"].covariance_scale == 2.0
    assert "posenet" not in cfg.pose_sources  # a given table replaces the default one


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gate_probability: 1.5\n", "gate_probability"),
        ("history_s: 5.0\nbackward_jump_reset_s: 1.0\n", "backward_jump_reset_s"),
        ("pose_sources: {bovw: {covariance_scale: -1}}\n", "pose_sources.bovw.covariance_scale"),
        ("pose_sources: {gps: {}}\n", "more than one kind of source"),
        ("process_noise: {typo: 1}\n", "process_noise.typo"),
    ],
)
def test_bad_values_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fusion.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{path.name}.*{message}"):
        FusionConfig.load(path)
