"""Scenario presets and validation: errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geoloc_ros.errors import ConfigError
from geoloc_ros.sim.errors import ScenarioError
from geoloc_ros.sim.scenario import PRESETS, load_scenario, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip_through_yaml(name: str, tmp_path: Path) -> None:
    scenario = preset(name)
    assert scenario.name == name
    path = tmp_path / "s.yaml"
    path.write_text(scenario.to_yaml(), encoding="utf-8")
    assert load_scenario(path) == scenario


def test_standard_matches_the_benchmark_shape() -> None:
    s = load_scenario("standard")
    assert s.drive.route_length_m >= 500 and s.drive.rate_hz == 20.0
    assert (s.drive.camera.width, s.drive.camera.height, s.drive.camera.hfov_deg) == (640, 480, 57.6)
    assert s.capture.panorama_width >= 3584 and 10 <= s.capture.spacing_m <= 50
    assert s.drive.camera.pinhole(distorted=True).distortion_model == "plumb_bob"
    assert s.drive.camera.pinhole(distorted=True).hfov_deg == pytest.approx(57.6, abs=0.01)


def test_yaml_overrides_start_from_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump({"preset": "tiny", "drive": {"speed_kmh": [31.0, 33.0]}}), encoding="utf-8"
    )
    s = load_scenario(path)
    assert s.name == "tiny" and s.drive.speed_kmh == (31.0, 33.0)
    assert s.capture.panorama_width == preset("tiny").capture.panorama_width


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"drive": {"speed_kmh": [50.0, 30.0]}}, "drive.speed_kmh"),
        ({"drive": {"camera": {"hfov_deg": -3}}}, "drive.camera.hfov_deg"),
        ({"capture": {"spacing_m": 0}}, "capture.spacing_m"),
        ({"capture": {"panorama_width": 1001}}, "capture.panorama_width"),
        ({"town": {"colour": "red"}}, "town.colour"),
        ({"bag": {"storage": "rosbag1"}}, "bag.storage"),
        ({"bag": {"image_topic": "camera"}}, "bag.image_topic"),
        ({"preset": "huge"}, "preset"),
        ({"capture": {"depth": "lidar"}}, "capture.depth"),
        ({"capture": {"no_depth_fraction": 1.5}}, "capture.no_depth_fraction"),
        (
            {"capture": {"metadata_error": {"position_sigma_m": -1}}},
            "capture.metadata_error.position_sigma_m",
        ),
        (
            {"nuisances": {"illumination": {"drive_tint_bgr": [1, 1, 5]}}},
            "nuisances.illumination.drive_tint_bgr",
        ),
    ],
)
def test_invalid_scenario_file_names_the_field(tmp_path: Path, data: dict, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message and field in message
    assert isinstance(info.value, ConfigError)


def test_unknown_preset_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not a preset"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("drive: [unclosed", encoding="utf-8")
    with pytest.raises(ScenarioError, match="invalid YAML"):
        load_scenario(bad)


def test_realistic_is_the_standard_town_with_gis_imperfections() -> None:
    real, standard = preset("realistic"), preset("standard")
    assert real.town == standard.town and real.drive == standard.drive
    cap = real.capture
    assert cap.depth == "plane" and cap.no_depth_fraction == 0.1
    assert (cap.spacing_m - cap.spacing_jitter_m, cap.spacing_m + cap.spacing_jitter_m) == (15.0, 30.0)
    assert cap.metadata_error.stated() == (1.0, 1.5)
    err = cap.metadata_error
    assert abs((err.position_sigma_m**2 + err.drift_sigma_m**2) ** 0.5 - 1.0) < 1e-9
    assert abs((err.heading_sigma_deg**2 + err.drift_heading_sigma_deg**2) ** 0.5 - 1.5) < 1e-9
    assert standard.capture.metadata_error.stated() == (None, None)  # exact metadata states nothing
