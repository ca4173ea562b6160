"""Checks shared by the model tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdas.constants import ONNX_OPSET


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
