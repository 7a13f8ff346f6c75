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
    with pytest.raises(ConfigError, match="invalid YAML") as raised:
        load_yaml(path, Outer)
    # one line naming the file, where and what (not PyYAML's '<unicode string>' block)
    assert str(raised.value) == (
        f"{path}: invalid YAML: line 2, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    )
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(path, Outer)


def test_unreadable_files_are_one_line_errors_of_the_callers_kind(tmp_path):
    from geoloc_ros.camera.errors import CameraModelError
    from geoloc_ros.config import read_yaml

    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\x08\x07\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"model.onnx: not a YAML config file \(not UTF-8 text\)"):
        load_yaml(binary, Outer)
    with pytest.raises(CameraModelError, match=r"missing.yaml: camera file not found"):
        read_yaml(tmp_path / "missing.yaml", "camera file", CameraModelError)
    with pytest.raises(ConfigError, match=r"cannot read config file: Is a directory"):
        read_yaml(tmp_path)


def test_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    cfg = Outer(name="n", drive=Inner(speed_kmh=35))
    path.write_text(dump_yaml(cfg))
    assert load_yaml(path, Outer) == cfg
    assert load_yaml(tmp_path / "c.yaml", Outer).drive.speed_kmh == 35
