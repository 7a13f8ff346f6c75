import pytest
from pydantic import Field

from geoloc_ros.config import StrictModel, dump_yaml, load_yaml
from geoloc_ros.errors import ConfigError


class Inner(StrictModel):
    speed_kmh: float = Field(40.0, gt=0)


class Outer(StrictModel):
    name: str = "x"
    drive: Inner = Inner()


def test_errors_name_file_and_nested_field(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text("drive:\n  speed_kmh: -3\n")
    with pytest.raises(ConfigError, match=r"scenario.yaml: drive.speed_kmh: Input should be greater than 0"):
        load_yaml(path, Outer)


def test_unknown_keys_and_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("nmae: y\n")
    with pytest.raises(ConfigError, match="nmae: Extra inputs are not permitted"):
        load_yaml(path, Outer)
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(path, Outer)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(path, Outer)


def test_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    cfg = Outer(name="n", drive=Inner(speed_kmh=35))
    path.write_text(dump_yaml(cfg))
    assert load_yaml(path, Outer) == cfg
    assert load_yaml(tmp_path / "c.yaml", Outer).drive.speed_kmh == 35
