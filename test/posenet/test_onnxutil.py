from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

from geoloc_ros.posenet.modelinfo import METADATA_KEY, PoseNetModelInfo
from geoloc_ros.posenet.onnxutil import store_weights_fp16


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(a) for a in session.run(["pose", "log_var"], {"image": x})]


def test_fp16_weights_compute_the_fp32_model_with_rounded_weights(tiny_onnx: dict[str, Path]) -> None:
    fp32 = onnx.load(tiny_onnx["fp32"])
    half = store_weights_fp16(fp32)
    # Every float32 weight of some size is stored as float16; the graph itself stays float32.
    stored = {t.name: t for t in half.graph.initializer}
    large = [t for t in fp32.graph.initializer if t.data_type == TensorProto.FLOAT and np.prod(t.dims) >= 16]
    assert large
    for weight in large:
        assert weight.name not in stored
        assert stored[weight.name + "__fp16"].data_type == TensorProto.FLOAT16
    casts = [n for n in half.graph.node if n.op_type == "Cast"]
    assert {n.output[0] for n in casts} >= {w.name for w in large}
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    onnx.checker.check_model(half)
    props = {p.key: p.value for p in half.metadata_props}
    assert PoseNetModelInfo.from_metadata_props(props).precision == "fp16-weights"
    assert METADATA_KEY in props and "fp16-weights" in half.doc_string
    # Its outputs are those of the FP32 graph with its weights rounded to float16.
    rounded = onnx.ModelProto()
    rounded.CopyFrom(fp32)
    for weight in rounded.graph.initializer:
        if weight.name in {w.name for w in large}:
            values = numpy_helper.to_array(weight).astype(np.float16).astype(np.float32)
            weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    x = np.random.default_rng(3).standard_normal((2, 3, 48, 64)).astype(np.float32)
    for a, b in zip(_run(half, x), _run(rounded, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # The input model is left as it was.
    names = {w.name for w in large}
    assert all(t.data_type == TensorProto.FLOAT for t in fp32.graph.initializer if t.name in names)
