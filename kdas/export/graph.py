"""Small ONNX graph helpers shared by the exporters and converters."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdas.errors import KdasError
from kdas.utils.atomic import atomic_output_path

if TYPE_CHECKING:
    import onnx

_PROTOBUF_LIMIT = 2**31 - 1  # a single-file ONNX model cannot exceed 2 GB


def import_onnx() -> Any:
    """The onnx module, or BackendUnavailable naming the extra that installs it."""
    from kdas.errors import BackendUnavailable

    try:
        import onnx
    except ImportError:
        raise BackendUnavailable(
            "the onnx package is not installed: install it with `pip install 'kdas[cpu]'`"
        ) from None
    return onnx


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name: converters select nodes to skip by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"kdas_{node.op_type}_{i}"
        seen.add(node.name)


def normalization_tail(model: onnx.ModelProto, output_name: str) -> list[str]:
    """Names of the nodes computing the final L2 normalisation `x / max(||x||, eps)`.

    Walks back from the output's producer through the denominator only, stopping at the
    un-normalised feature (the division's numerator). These nodes must stay in float32: a sum
    of 2048 squared activations overflows float16, and an 8-bit norm would coarsen every
    embedding's length in the same way for all images but not exactly.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    last = producers.get(output_name)
    if last is None or last.op_type not in ("Div", "Mul"):
        raise KdasError(
            f"internal: the exported graph does not end in the L2 normalisation "
            f"(output {output_name!r} is produced by {last.op_type if last else 'nothing'})"
        )
    feature = last.input[0]
    tail, stack = [last], list(last.input[1:])
    seen = {last.name}
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        tail.append(node)
        stack.extend(name for name in node.input if name != feature)
    return [node.name for node in tail]


def sort_topologically(model: onnx.ModelProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (the ONNX rule).

    onnxruntime's float16 converter appends the input casts at the end of the node list; the
    checker and some runtimes reject that order. Stable: already-sorted graphs do not change.
    """
    graph = model.graph
    ready = {""} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending = list(graph.node)
    ordered = []
    while pending:
        remaining = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            raise KdasError(
                f"internal: the graph has a cycle or a missing input at node {remaining[0].name}"
            )
        pending = remaining
    copies = [type(node)() for node in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


def save_single_file(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Check and write `model` as one self-contained file, atomically."""
    onnx = import_onnx()
    size = model.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise KdasError(
            f"the exported model is {size / 2**30:.1f} GB, above ONNX's 2 GB single-file limit"
        )
    onnx.checker.check_model(model)
    path = Path(path)
    with atomic_output_path(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return path
