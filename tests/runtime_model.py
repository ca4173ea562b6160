"""A tiny exported embedding model for the runtime tests (not a test module itself).

`export_tiny_model` is the one place that makes the ONNX file the runtime tests use: swap its
body for the real `kdas export` of a tiny student and every runtime test follows.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from kdas.constants import ONNX_OPSET
from kdas.runtime.model_meta import EmbeddingModelInfo

INPUT_SIZE = (32, 16)  # (height, width): smaller than the tiny_market images, so they resize
EMBED_DIM = 16


def tiny_net(seed: int = 0, dim: int = EMBED_DIM):
    """Conv -> BN -> ReLU -> conv -> global pool -> L2 norm: the shape of a Re-ID embedder."""
    import torch
    from torch import nn

    class TinyEmbedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, dim, 3, stride=2, padding=1),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.body(x), dim=1)

    torch.manual_seed(seed)
    net = TinyEmbedder().eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding them is exercised
        bn = net.body[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return net


def weights_digest(net) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def export_tiny_model(out: Path, seed: int = 0) -> tuple[Path, EmbeddingModelInfo]:
    """Export `tiny_net(seed)` to `out` with kdas metadata; returns (path, info)."""
    import onnx
    import torch

    from kdas.constants import IMAGENET_MEAN, IMAGENET_STD

    net = tiny_net(seed)
    height, width = INPUT_SIZE
    info = EmbeddingModelInfo(
        model_kind="student",
        input_name="images",
        output_name="embeddings",
        input_height=height,
        input_width=width,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=EMBED_DIM,
        weights_sha256=weights_digest(net),
        kdas_version="test",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
        torch.onnx.export(
            net,
            (torch.zeros(2, 3, height, width),),
            str(out),
            input_names=[info.input_name],
            output_names=[info.output_name],
            dynamic_axes={info.input_name: {0: "batch"}, info.output_name: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    model = onnx.load(str(out))
    for key, value in info.to_metadata_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))
    return out, info
