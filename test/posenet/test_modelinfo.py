from __future__ import annotations

import json

import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.posenet.errors import ModelFormatError, ModelMapMismatchError
from geoloc_ros.posenet.modelinfo import METADATA_KEY, ModelMetadata, OriginMetadata, PoseNetModelInfo
from geoloc_ros.posenet.preprocess import InputSpec
from geoloc_ros.posenet.targets import PoseNormalization


def make_info(dof: int = 3) -> PoseNetModelInfo:
    norm = PoseNormalization(dof, (1.0, 2.0) if dof == 3 else (1.0, 2.0, 3.0), 12.5)
    camera = PinholeCamera.from_hfov(640, 480, 57.6)
    return PoseNetModelInfo.build(
        InputSpec(224, 168),
        norm,
        camera,
        "efficientnet_lite0",
        "fp16",
        {"epoch": 3},
        variance_scale=(2.5, 0.5),
    )


@pytest.mark.parametrize("dof", [3, 6])
def test_metadata_roundtrip(dof: int) -> None:
    info = make_info(dof)
    back = PoseNetModelInfo.from_metadata_props({METADATA_KEY: info.to_json()}, "m.onnx")
    assert back.dof == dof and back.precision == "fp16"
    assert back.input_spec == info.input_spec
    assert back.normalization == info.normalization
    assert back.camera.hfov_deg == pytest.approx(57.6)
    assert back.metadata.training == {"epoch": 3}
    assert back.variance_scale == (2.5, 0.5)


def test_metadata_errors_name_the_model_and_field() -> None:
    data = json.loads(make_info().to_json())
    with pytest.raises(ModelFormatError, match=r"m\.onnx: not a geoloc_ros PoseNet model"):
        PoseNetModelInfo.from_metadata_props({}, "m.onnx")
    bad = dict(data, format_version=99)
    with pytest.raises(ModelFormatError, match="version 99"):
        PoseNetModelInfo.from_json(json.dumps(bad), "m.onnx")
    bad = dict(data, normalization={"position_mean": [0, 0], "position_scale": -1})
    with pytest.raises(ModelFormatError, match=r"normalization\.position_scale"):
        PoseNetModelInfo.from_json(json.dumps(bad), "m.onnx")
    bad = dict(data, variance_scale={"position": 0.0, "rotation": 1.0})
    with pytest.raises(ModelFormatError, match=r"variance_scale\.position"):
        PoseNetModelInfo.from_json(json.dumps(bad), "m.onnx")
    bad = dict(data, outputs={"pose": ["x"], "log_var": ["position", "rotation"]})
    with pytest.raises(ModelFormatError, match="output layout"):
        PoseNetModelInfo.from_json(json.dumps(bad), "m.onnx")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        PoseNetModelInfo.from_json("{", "m.onnx")


def bound_info(map_id: str | None, origin: GeoOrigin | None) -> PoseNetModelInfo:
    info = make_info()
    metadata = info.metadata.model_copy(
        update={
            "map_id": map_id,
            "map_origin": None if origin is None else OriginMetadata(**origin.to_dict()),
        }
    )
    return PoseNetModelInfo(ModelMetadata.model_validate(metadata.model_dump()), "town_a.onnx")


def test_a_model_is_refused_with_another_map_naming_both():
    town = GeoOrigin(48.8566, 2.3522, 35.0)
    info = bound_info("aaaa", town)
    assert "was trained on /maps/a" in info.check_map("aaaa", town, "/maps/a")
    with pytest.raises(ModelMapMismatchError, match=r"town_a\.onnx .* /maps/b .*map id aaaa vs bbbb"):
        info.check_map("bbbb", town, "/maps/b")
    far = GeoOrigin(48.8566, 2.3622, 35.0)  # ~730 m east
    moved = r"origin \(48\.856600, 2\.352200\) vs \(48\.856600, 2\.362200\)"
    with pytest.raises(ModelMapMismatchError, match=moved):
        info.check_map("aaaa", far, "/maps/a_moved")
    # Experts override; the note still says so.
    assert "allowed by allow_map_mismatch" in info.check_map("bbbb", town, "/maps/b", allow_mismatch=True)
    # Models exported before the id was recorded: only the origin is checked.
    legacy = bound_info(None, town)
    assert "records no map id" in legacy.check_map("cccc", town, "/maps/c")
    with pytest.raises(ModelMapMismatchError):
        legacy.check_map("cccc", far, "/maps/c")
