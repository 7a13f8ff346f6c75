from __future__ import annotations

import json

import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.posenet.errors import ModelFormatError
from geoloc_ros.posenet.modelinfo import METADATA_KEY, PoseNetModelInfo
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
