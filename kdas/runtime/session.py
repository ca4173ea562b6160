"""The one place that opens ONNX Runtime sessions, so parity, profiling and serving run alike.

Provider choice, thread counts and graph optimisation all change latency and (slightly) numbers;
keeping them here means a parity check measures the same session the service later runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdas.errors import BackendUnavailable, KdasError
from kdas.runtime.model_meta import EmbeddingModelInfo, check_input_dims

if TYPE_CHECKING:
    import onnxruntime

DEFAULT_PROVIDERS = "auto"  # every caller's default: the fastest available
# Fastest first: "auto" takes those of these that onnxruntime reports as available.
AUTO_PROVIDER_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
GRAPH_OPTIMIZATIONS = ("all", "extended", "basic", "disabled")
_ORT_INSTALL_HINT = (
    "onnxruntime is not installed: install it with `pip install 'kdas[cpu]'` "
    "(or `kdas[gpu]` for onnxruntime-gpu)"
)


def import_onnxruntime() -> Any:
    """Import onnxruntime or say, in one line, which extra installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable(_ORT_INSTALL_HINT) from None
    return onnxruntime


def available_providers() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def resolve_providers(providers: str | Sequence[str] = DEFAULT_PROVIDERS) -> list[str]:
    """Turn "auto", "cpu", "cuda", "tensorrt" or an explicit list into available providers."""
    available = available_providers()
    if isinstance(providers, str):
        short = {
            "cpu": ["CPUExecutionProvider"],
            "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "tensorrt": [
                "TensorrtExecutionProvider",
                "CUDAExecutionProvider",
                "CPUExecutionProvider",
            ],
        }
        if providers == "auto":
            return [p for p in AUTO_PROVIDER_ORDER if p in available] or available
        if providers not in short:
            raise KdasError(
                f"unknown providers {providers!r}: use auto, cpu, cuda, tensorrt or a list of "
                "onnxruntime execution provider names"
            )
        providers = short[providers]
    wanted = list(providers)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise BackendUnavailable(
            f"onnxruntime execution provider(s) {', '.join(missing)} not available here "
            f"(available: {', '.join(available)}); install onnxruntime-gpu (`kdas[gpu]`) "
            "with CUDA/TensorRT for GPU providers, or use providers='cpu'"
        )
    return wanted


def _check_model_file(model_path: Path) -> None:
    if not model_path.is_file():
        raise KdasError(f"ONNX model {model_path} does not exist: export one with `kdas export`")


def create_session(
    model_path: str | os.PathLike[str],
    providers: str | Sequence[str] = DEFAULT_PROVIDERS,
    intra_op_threads: int | None = None,
    inter_op_threads: int = 1,
    graph_optimization: str = "all",
    enable_profiling: bool = False,
    profile_prefix: str | None = None,
) -> onnxruntime.InferenceSession:
    """Open an ONNX Runtime session with kdas's defaults.

    `intra_op_threads=None` lets onnxruntime use every core; inter-op parallelism stays at 1
    because Re-ID graphs are chains where running branches concurrently only adds contention.
    """
    ort = import_onnxruntime()
    model_path = Path(model_path)
    _check_model_file(model_path)
    if graph_optimization not in GRAPH_OPTIMIZATIONS:
        raise KdasError(
            f"unknown graph_optimization {graph_optimization!r}: "
            f"use one of {', '.join(GRAPH_OPTIMIZATIONS)}"
        )
    level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[graph_optimization]
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    if intra_op_threads is not None:
        if intra_op_threads < 0:
            raise KdasError(f"intra_op_threads must be >= 0 (0: all cores), not {intra_op_threads}")
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads < 0:
        raise KdasError(f"inter_op_threads must be >= 0, got {inter_op_threads}")
    options.inter_op_num_threads = inter_op_threads
    if enable_profiling:
        options.enable_profiling = True
        if profile_prefix:
            options.profile_file_prefix = profile_prefix
    chosen = resolve_providers(providers)
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdasError(
            f"cannot load ONNX model {model_path}: {first[:300]} "
            "(is it a complete .onnx file written by `kdas export`?)"
        ) from None


def read_model_info(
    path: str | os.PathLike[str] | None = None,
    session: onnxruntime.InferenceSession | None = None,
) -> EmbeddingModelInfo:
    """Read the kdas metadata an exported model carries, without importing the `onnx` package,
    and check the graph against it (`check_graph`).

    Pass an open session to avoid loading the model twice.
    """
    if session is None:
        if path is None:
            raise KdasError("read_model_info needs a model path or an open session")
        session = create_session(path, providers="cpu", graph_optimization="disabled")
    source = str(path) if path is not None else "ONNX model"
    props = session.get_modelmeta().custom_metadata_map
    info = EmbeddingModelInfo.from_metadata_props(props, source=source)
    check_graph(session, info, source)
    return info


def check_graph(
    session: onnxruntime.InferenceSession, info: EmbeddingModelInfo, source: str
) -> None:
    """The graph has the input and output its metadata names, and the input shape it promises
    (static dims only: a symbolic batch, or any dynamic dim, accepts what preprocessing gives)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if info.input_name not in inputs or info.output_name not in outputs:
        raise KdasError(
            f"{source}: metadata names input {info.input_name!r} / output "
            f"{info.output_name!r} but the graph has {sorted(inputs)} / {outputs}; "
            "re-export the model with `kdas export`"
        )
    shape = inputs[info.input_name].shape or []
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    check_input_dims(dims, info, source)
