"""ONNX graph utilities that need neither torch nor a training run (FP16 conversion).

:func:`convert_to_fp16` is what :func:`geoloc_ros.posenet.export.export_trained_model` applies for
``fp16=True``; it also turns an exported FP32 model into its FP16 twin without the checkpoint
(e.g. for the inference benchmark): weights and arithmetic in float16, inputs and outputs kept
float32 so the same preprocessing feeds both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

import onnx

from geoloc_ros.posenet.errors import ModelFormatError
from geoloc_ros.posenet.modelinfo import METADATA_KEY, PoseNetModelInfo

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
    props = {p.key: p.value for p in converted.metadata_props}
    if METADATA_KEY in props:
        info = PoseNetModelInfo.from_metadata_props(props, "model")
        info.metadata.precision = "fp16"
        for entry in converted.metadata_props:
            if entry.key == METADATA_KEY:
                entry.value = info.to_json()
        converted.doc_string = converted.doc_string.replace("fp32", "fp16")
    return converted
