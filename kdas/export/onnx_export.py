"""Export a kdas model folder to one self-contained ONNX file that the runtime can serve.

The graph is the eval-mode network followed by L2 normalisation (inner product = cosine), with
input `images` (N, 3, H, W) float32 and a dynamic batch axis, and output `embeddings` (N, D).
Two torch exporters exist: the TorchScript-based one (`legacy`) and the `torch.export`-based one
(`dynamo`). Both give the same numbers; the dynamo graph is about half the nodes (no Identity /
Constant clutter, BatchNorm folded the same way), so it is the default, with the legacy one
as the fallback when the dynamo path fails or onnxscript is missing (docs/deployment.md).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from kdas import __version__
from kdas.constants import ONNX_OPSET, ONNX_OPSET_RANGE
from kdas.errors import KdasError
from kdas.export.graph import import_onnx, name_nodes, save_single_file
from kdas.export.metadata import INPUT_NAME, OUTPUT_NAME, model_info, write_metadata
from kdas.files import EXPORT_DIR, ONNX_SUFFIXES

if TYPE_CHECKING:
    import onnx

EXPORTERS = ("auto", "dynamo", "legacy")
L2_EPS = 1e-12  # as torch.nn.functional.normalize
_EXAMPLE_BATCH = 2  # not 1: torch.export would specialise a batch of 1 into a constant


class EmbeddingGraph(nn.Module):
    """What gets exported: the eval forward, then x / max(||x||, eps).

    Written as a broadcast division (not `F.normalize`, whose `expand_as` becomes an Expand
    node that trips ONNX Runtime's symbolic shape inference before quantization).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model(images)
        norm = torch.linalg.vector_norm(features, ord=2, dim=1, keepdim=True)
        return features / norm.clamp_min(L2_EPS)


def default_output(
    model_dir: str | os.PathLike[str], kind: str, suffix: str = ONNX_SUFFIXES["fp32"]
) -> Path:
    """runs/NAME/<stage>/ -> runs/NAME/export/<kind><suffix> (architecture.md's layout)."""
    return Path(model_dir).resolve().parent / EXPORT_DIR / f"{kind}{suffix}"


def _check_exporter(exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise KdasError(f"unknown exporter {exporter!r}: use {', '.join(EXPORTERS)}")
    if exporter == "auto":
        return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "legacy"
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise KdasError(
            "the dynamo exporter needs onnxscript: `pip install 'kdas[cpu]'` "
            "or use --exporter legacy"
        )
    return exporter


def _run_exporter(
    graph: EmbeddingGraph, example: torch.Tensor, path: Path, exporter: str, opset: int
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy deprecation, tracer and onnxscript chatter
        if exporter == "legacy":
            torch.onnx.export(
                graph, (example,), str(path), input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )  # fmt: skip
        else:
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(
                graph, (example,), str(path), input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
                dynamic_shapes={"images": {0: batch}}, external_data=False, optimize=True,
                verbose=False,
            )  # fmt: skip


def export_graph(
    net: nn.Module,
    input_size: tuple[int, int],
    path: str | os.PathLike[str],
    exporter: str = "auto",
    opset: int = ONNX_OPSET,
) -> tuple[onnx.ModelProto, str]:
    """Export `net` (an eval-mode Re-ID model) + L2 normalisation; returns (model, exporter used).

    With "auto" a failure of the dynamo exporter falls back to the legacy one, because a
    working file beats a cleaner graph; naming an exporter explicitly never falls back.
    """
    onnx = import_onnx()
    chosen = _check_exporter(exporter)
    graph = EmbeddingGraph(net).eval()
    height, width = input_size
    example = torch.randn(_EXAMPLE_BATCH, 3, height, width)
    path = Path(path)
    try:
        _run_exporter(graph, example, path, chosen, opset)
    except Exception as exc:
        if exporter != "auto" or chosen == "legacy":
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise KdasError(f"ONNX export ({chosen} exporter) failed: {first[:300]}") from exc
        chosen = "legacy"
        _run_exporter(graph, example, path, chosen, opset)
    model = onnx.load(str(path), load_external_data=True)
    name_nodes(model)
    return model, chosen


def export_onnx(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    opset: int = ONNX_OPSET,
    exporter: str = "auto",
    input_size: tuple[int, int] | None = None,
) -> Path:
    """Export a model folder to one ONNX file carrying the kdas metadata; returns its path.

    `input_size` (H, W) defaults to the size the model was trained at; the height is baked
    into the graph (the part-aware op's stripes depend on it), the batch stays dynamic.
    """
    from kdas.models import load as load_model

    low, high = ONNX_OPSET_RANGE
    if not low <= opset <= high:
        raise KdasError(
            f"opset {opset} is outside the supported range {low}..{high} (default {ONNX_OPSET})"
        )
    loaded = load_model(str(model_dir))
    size = tuple(input_size) if input_size else tuple(loaded.spec.input_size)
    info = model_info(loaded, size)
    target = Path(out) if out else default_output(model_dir, loaded.spec.kind)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kdas-export-") as tmp:
        model, used = export_graph(loaded.model, size, Path(tmp) / "model.onnx", exporter, opset)
    write_metadata(model, info)
    model.doc_string = (
        f"kdas {__version__} export of {Path(model_dir).name} ({loaded.spec.kind}), "
        f"{used} exporter, opset {opset}, {time.perf_counter() - start:.1f} s"
    )
    return save_single_file(model, target)
