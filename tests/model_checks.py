"""Checks shared by the model tests (not a test module)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from kdas.constants import ONNX_OPSET

if TYPE_CHECKING:
    import onnx


def onnx_and_torch_outputs(
    module: nn.Module,
    path: Path,
    sample: torch.Tensor,
    names: tuple[str, str] = ("x", "y"),
    dynamo: bool = False,
    batches: tuple[int, ...] = (1, 3),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Export the eval-mode `module` to `path` with a dynamic batch axis (traced on `sample`),
    then run ONNX Runtime and PyTorch on a random input of each batch size shaped like `sample`.

    Returns `(onnx output, torch output)` per batch; the caller skips when onnxruntime is missing
    and states what must match.
    """
    import onnxruntime as ort

    input_name, output_name = names
    if dynamo:
        batch = torch.export.Dim("batch")
        kwargs = {"dynamic_shapes": ({0: batch},), "external_data": False}
    else:
        kwargs = {"dynamic_axes": {input_name: {0: "batch"}, output_name: {0: "batch"}}}
    torch.onnx.export(
        module, (sample,), str(path), input_names=[input_name], output_names=[output_name],
        opset_version=ONNX_OPSET, dynamo=dynamo, **kwargs,
    )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = []
    for size in batches:
        x = torch.randn(size, *sample.shape[1:])
        with torch.no_grad():
            ref = module(x).numpy()
        outputs.append((session.run(None, {input_name: x.numpy()})[0], ref))
    return outputs


def check_head_contract(
    net: nn.Module, x: torch.Tensor, num_classes: int, dim: int
) -> torch.Tensor:
    """The Re-ID forward contract: training gives `(logits, f)`, eval the `dim`-wide embedding
    (returned, computed without gradients); leaves `net` in eval mode."""
    batch = x.shape[0]
    net.train()
    logits, f = net(x)
    assert logits.shape == (batch, num_classes) and f.shape == (batch, dim)
    net.eval()
    with torch.no_grad():
        embedding = net(x)
    assert embedding.shape == (batch, dim)
    return embedding


# ---------------------------------------------------------------- INT8 (QDQ) graphs

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def float_islands(model: onnx.ModelProto) -> list[str]:
    """Names of the compute nodes of a QDQ graph that read some input not from a
    DequantizeLinear: ONNX Runtime runs those in float32 (it fuses DQ -> op -> Q into an integer
    kernel only when every input, the weight and bias included, is dequantized)."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in COMPUTE_OPS
        and any(producers.get(name) != "DequantizeLinear" for name in node.input if name)
    ]


def quantize_like_export(
    source: Path,
    out: Path,
    batches: Sequence[np.ndarray],
    input_name: str = "x",
    keep_float: Sequence[str] = (),
) -> onnx.ModelProto:
    """INT8 QDQ with `kdas.export.quantize.quantize_int8`'s recipe (pre-process without symbolic
    shapes, unique node names, S8 per-channel weights, U8 activations, MinMax calibration,
    BatchNorms that survived folding left in float32), calibrated on `batches`, for graphs
    without the kdas metadata and L2 tail that `quantize_int8` expects. `keep_float` names
    further nodes (of the pre-processed graph) to leave unquantized."""
    import onnx
    from onnxruntime import quantization

    from kdas.export.graph import name_nodes
    from kdas.export.quantize import _reader

    prepared = out.with_suffix(".prepared.onnx")
    quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    pre = onnx.load(str(prepared))
    name_nodes(pre)
    onnx.save_model(pre, str(prepared))
    quantization.quantize_static(
        str(prepared),
        str(out),
        _reader(list(batches), input_name),
        quant_format=quantization.QuantFormat.QDQ,
        per_channel=True,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        nodes_to_exclude=[
            *(n.name for n in pre.graph.node if n.op_type == "BatchNormalization"),
            *keep_float,
        ],
        calibrate_method=quantization.CalibrationMethod.MinMax,
    )
    return onnx.load(str(out))
