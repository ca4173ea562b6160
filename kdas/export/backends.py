"""The inference backends `kdas bench` compares, each a callable on one NCHW float32 batch.

Every runner loads its own copy of the model (weights count in its memory), runs what a user
would deploy, and returns nothing: timing is all that is wanted from it. The ONNX and OpenVINO
backends run files `kdas bench` exported first (keyed by backend name in `files`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdas.errors import BackendUnavailable, KdasError

Runner = Callable[[np.ndarray], object]
# OpenVINO backend -> the IR precision it runs (kdas.export.openvino_export.OPENVINO_PRECISIONS)
OPENVINO_BACKENDS = {"openvino-fp32": "fp32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8", "tensorrt", *OPENVINO_BACKENDS)
BACKEND_NOTES = {
    "torch": "PyTorch eager fp32 (NCHW), inference_mode",
    "torch-bf16": "PyTorch eager, autocast bfloat16, channels_last",
    "onnx": "ONNX Runtime CPU fp32 (graph optimisation: all)",
    "onnx-int8": "ONNX Runtime CPU INT8 QDQ (S8 weights per channel, U8 activations)",
    "tensorrt": "TensorRT fp16 engine (CUDA GPU)",
    "openvino-fp32": "OpenVINO CPU, fp32 IR, INFERENCE_PRECISION_HINT f32, PERFORMANCE_HINT "
    "LATENCY",
    "openvino-bf16": "OpenVINO CPU, INFERENCE_PRECISION_HINT bf16 (AMX / avx512_bf16), "
    "PERFORMANCE_HINT LATENCY",
    "openvino-int8": "OpenVINO CPU, INT8 IR read from kdas's QDQ INT8 ONNX (the onnx-int8 "
    "calibration images), PERFORMANCE_HINT LATENCY",
}


def _torch_runner(model_dir: str | os.PathLike[str], bf16: bool) -> Runner:
    import torch

    from kdas.export.onnx_export import EmbeddingGraph
    from kdas.models import load as load_model

    net = EmbeddingGraph(load_model(str(model_dir)).model).eval()
    if bf16:
        net = net.to(memory_format=torch.channels_last)

    def run(batch: np.ndarray) -> object:
        x = torch.from_numpy(batch)
        with torch.inference_mode():
            if not bf16:
                return net(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x.contiguous(memory_format=torch.channels_last))

    return run


def _onnx_runner(path: Path, threads: int | None) -> Runner:
    from kdas.runtime.session import create_session, read_model_info

    session = create_session(path, providers="cpu", intra_op_threads=threads)
    info = read_model_info(path, session=session)

    def run(batch: np.ndarray) -> object:
        return session.run([info.output_name], {info.input_name: batch})

    return run


def _openvino_runner(path: Path, threads: int | None) -> Runner:
    from kdas.runtime.openvino_model import OpenVINOModel

    return OpenVINOModel(path, threads=threads).run


def _tensorrt_runner(onnx_path: Path | None, work_dir: Path) -> Runner:
    from kdas.export.tensorrt_build import build_engine, require_tensorrt
    from kdas.runtime.tensorrt_engine import TensorRTRunner

    require_tensorrt()
    if onnx_path is None:
        raise KdasError("internal: the tensorrt backend needs the fp32 ONNX export")
    engine = build_engine(onnx_path, work_dir / f"{onnx_path.stem}.fp16.engine", "fp16")
    runner = TensorRTRunner(engine)
    return runner.run


def make_runner(
    backend: str,
    model_dir: str | os.PathLike[str],
    onnx_files: dict[str, Path],
    work_dir: Path,
    threads: int | None = None,
) -> Runner:
    """A ready-to-time runner; BackendUnavailable when this machine lacks the backend.

    `onnx_files` maps a backend name to its exported file: "onnx", "onnx-int8" (ONNX) and
    "openvino-*" (IR .xml)."""
    if backend == "torch":
        return _torch_runner(model_dir, bf16=False)
    if backend == "torch-bf16":
        return _torch_runner(model_dir, bf16=True)
    if backend in ("onnx", "onnx-int8", *OPENVINO_BACKENDS):
        path = onnx_files.get(backend)
        if path is None:
            raise BackendUnavailable(f"no {backend} model was exported")
        if backend in OPENVINO_BACKENDS:
            return _openvino_runner(path, threads)
        return _onnx_runner(path, threads)
    if backend == "tensorrt":
        return _tensorrt_runner(onnx_files.get("onnx"), work_dir)
    raise KdasError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
