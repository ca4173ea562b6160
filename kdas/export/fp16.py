"""FP16 ONNX for GPUs: float16 weights and activations, float32 input and output.

Keeping the I/O in float32 means the runtime's preprocessing and index code never see float16.
The final L2 normalisation stays in float32 too: the squared norm of a 2048-d BNNeck feature
overflows float16's 65504.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from kdas.errors import BackendUnavailable
from kdas.export.graph import (
    import_onnx,
    name_nodes,
    normalization_tail,
    save_single_file,
    sort_topologically,
)
from kdas.export.metadata import read_metadata, with_precision, write_metadata

if TYPE_CHECKING:
    import onnx


_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto data types


def _cast_to(node: onnx.NodeProto, dtype: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == dtype for a in node.attribute)


def _rename_all(nodes: list[onnx.NodeProto], rename: dict[str, str]) -> None:
    """Point every input and output through `rename` (followed to its end)."""
    for node in nodes:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                while name in rename:
                    name = rename[name]
                field[i] = name


def _drop_cast_round_trips(model: onnx.ModelProto, fp32_nodes: set[str]) -> int:
    """Remove float32 -> float16 -> float32 Cast pairs after the nodes kept in float32.

    The converter casts every output of a kept node back to float16, and the next kept node
    casts it up again: the unit-length output would be rounded to float16 on its way out.
    Returns the number of Cast nodes removed.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    removed: set[str] = set()
    rename: dict[str, str] = {}
    for down in graph.node:
        source = producers.get(down.input[0]) if down.input else None
        if not _cast_to(down, _FLOAT16) or source is None or source.name not in fp32_nodes:
            continue
        ups = consumers.get(down.output[0], [])
        if down.output[0] in outputs or not ups or not all(_cast_to(u, _FLOAT) for u in ups):
            continue
        removed.add(down.name)
        for up in ups:
            removed.add(up.name)
            if up.output[0] in outputs:  # the graph output keeps its name: rename the source
                rename[down.input[0]] = up.output[0]
            else:
                rename[up.output[0]] = down.input[0]
    kept = [node for node in graph.node if node.name not in removed]
    _rename_all(kept, rename)
    del graph.node[:]
    graph.node.extend(kept)
    return len(removed)


def convert_fp16(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert an fp32 kdas ONNX file to fp16 (precision "fp16" in its metadata)."""
    onnx = import_onnx()
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise BackendUnavailable(
            "FP16 conversion uses onnxruntime's float16 tools: `pip install 'kdas[cpu]'`"
        ) from None
    model = onnx.load(str(source))
    info = read_metadata(model, str(source))
    name_nodes(model)
    keep_fp32 = normalization_tail(model, info.output_name)
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_fp32)
    _drop_cast_round_trips(half, set(keep_fp32))
    sort_topologically(half)
    write_metadata(half, with_precision(info, "fp16"))
    half.doc_string = f"{model.doc_string}; converted to float16 (I/O and L2 norm in float32)"
    return save_single_file(half, out)
