"""ONNX graph utilities that need neither torch nor a training run (FP16 conversion).

:func:`convert_to_fp16` is what :func:`geoloc_ros.posenet.export.export_trained_model` applies for
``fp16=True``; it also turns an exported FP32 model into its FP16 twin without the checkpoint
(e.g. for the inference benchmark): weights and arithmetic in float16, inputs and outputs kept
float32 so the same preprocessing feeds both. :func:`store_weights_fp16` (``fp16_weights=True``)
only stores the weights as float16, each followed by a Cast to float32 that onnxruntime folds
when the session loads: half the file, FP32 arithmetic and speed (on a CPU without float16
convolutions, FP16 arithmetic is slower than FP32: BENCHMARKS.md, issue 15).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from geoloc_ros.posenet.errors import ModelFormatError
from geoloc_ros.posenet.modelinfo import METADATA_KEY, PoseNetModelInfo, Precision

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_onnx_tools() -> Iterator[None]:
    """Keep exporter and converter narration (stdout, INFO logs, deprecation noise) out of the output."""
    names = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "onnxruntime.transformers")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        logger.debug("onnx tools: %s", captured.getvalue().strip())


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Order nodes so each input is produced before use (the FP16 converter appends its casts)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ModelFormatError(f"graph node {pending[0].name!r} has an input no node produces")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)


def convert_to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and arithmetic, float32 inputs and outputs; PoseNet metadata says ``fp16``."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet_onnx_tools():
        converted = convert_float_to_float16(proto, keep_io_types=True)
    sort_topologically(converted.graph)
    _set_precision(converted, "fp16")
    return converted


# Float32 initializers with fewer elements stay float32 (shapes, scalars: nothing to save).
_MIN_FP16_WEIGHT_SIZE = 16
_FP16_SUFFIX = "__fp16"


def store_weights_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 model ``proto`` with its float32 weights stored as float16, each cast back to
    float32 by a ``Cast`` node at the top of the graph (folded by onnxruntime's constant folding
    when a session loads): half the file, FP32 arithmetic. PoseNet metadata says ``fp16-weights``."""
    converted = onnx.ModelProto()
    converted.CopyFrom(proto)
    graph = converted.graph
    inputs = {i.name for i in graph.input}  # an initializer that is also an input stays as it is
    kept, stored, casts = [], [], []
    for init in graph.initializer:
        small = int(np.prod(init.dims)) < _MIN_FP16_WEIGHT_SIZE
        if init.data_type != TensorProto.FLOAT or small or init.name in inputs:
            kept.append(init)
            continue
        weights = numpy_helper.to_array(init)
        if np.abs(weights).max(initial=0.0) > np.finfo(np.float16).max:
            raise ModelFormatError(f"weight {init.name!r} exceeds the float16 range")
        half = numpy_helper.from_array(weights.astype(np.float16), init.name + _FP16_SUFFIX)
        stored.append(half)
        casts.append(
            helper.make_node(
                "Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "_to_float"
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept + stored)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    _set_precision(converted, "fp16-weights")
    return converted


def _set_precision(proto: onnx.ModelProto, precision: Precision) -> None:
    """Record ``precision`` in the PoseNet metadata and the doc string of an exported model."""
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY in props:
        info = PoseNetModelInfo.from_metadata_props(props, "model")
        info.metadata.precision = precision
        for entry in proto.metadata_props:
            if entry.key == METADATA_KEY:
                entry.value = info.to_json()
        proto.doc_string = proto.doc_string.replace("fp32", precision)
