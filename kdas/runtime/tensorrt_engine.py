"""A small TensorRT 10 runner for serialized engines (`.engine` / `.plan`), without torch.

An engine file carries no kdas metadata, so `kdas export` writes a JSON sidecar beside it
(`student.engine.json`, or `student.json`) holding the same `kdas.*` keys as the ONNX
metadata_props. Device memory goes through cuda-python, the one CUDA binding that needs no torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kdas.errors import BackendUnavailable, KdasError
from kdas.runtime.model_meta import PREFIX, EmbeddingModelInfo

ENGINE_SUFFIXES = (".engine", ".plan")
_GPU_HINT = "install the GPU extra (`pip install 'kdas[gpu]'`) on a machine with CUDA"


def is_engine_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def sidecar_candidates(engine_path: Path) -> list[Path]:
    return [engine_path.with_name(engine_path.name + ".json"), engine_path.with_suffix(".json")]


def read_engine_info(engine_path: str | os.PathLike[str]) -> EmbeddingModelInfo:
    """Read the JSON sidecar of an engine: `kdas.*` keys as in ONNX metadata_props."""
    engine_path = Path(engine_path)
    for candidate in sidecar_candidates(engine_path):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise KdasError(f"engine sidecar {candidate} is not valid JSON") from None
            if not isinstance(data, dict):
                raise KdasError(f"engine sidecar {candidate} must hold a JSON object")
            props = data.get("metadata_props", data)
            if not any(str(k).startswith(PREFIX) for k in props):  # plain field names
                props = {PREFIX + k: json.dumps(v) for k, v in props.items()}
            return EmbeddingModelInfo.from_metadata_props(props, source=str(candidate))
    names = " or ".join(str(c) for c in sidecar_candidates(engine_path))
    raise KdasError(
        f"TensorRT engine {engine_path} has no metadata sidecar ({names}): "
        "export it with `kdas export MODEL_DIR --to tensorrt`, which writes both"
    )


def import_tensorrt_backends() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable(f"TensorRT is not installed: {_GPU_HINT}") from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendUnavailable(f"cuda-python is not installed: {_GPU_HINT}") from None
    return trt, cudart


def cuda_check(result: tuple[Any, ...], what: str) -> Any:
    """cuda-python returns (error, value...); turn an error into one line."""
    error = result[0]
    if int(error) != 0:
        raise BackendUnavailable(f"CUDA call {what} failed ({error}): is a CUDA GPU available?")
    return result[1] if len(result) == 2 else result[1:]


class TensorRTRunner:
    """Runs a one-input, one-output embedding engine on NCHW float32 batches."""

    def __init__(self, engine_path: str | os.PathLike[str]) -> None:
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise KdasError(f"TensorRT engine {self.path} does not exist")
        self.info = read_engine_info(self.path)
        trt, cudart = import_tensorrt_backends()
        self._trt, self._cudart = trt, cudart
        cuda_check(cudart.cudaSetDevice(0), "cudaSetDevice")
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise KdasError(
                f"TensorRT could not load {self.path}: it is corrupt or was built for another "
                "TensorRT version or GPU; rebuild it here with `kdas export MODEL --to tensorrt`"
            )
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._input = self.info.input_name
        self._output = self.info.output_name
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in (self._input, self._output):
            if name not in names:
                raise KdasError(
                    f"TensorRT engine {self.path} has no tensor {name!r} "
                    f"(it has {', '.join(names)}): its sidecar belongs to another model"
                )
        self._max_batch = int(engine.get_tensor_profile_shape(self._input, 0)[2][0])
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._run_lock = threading.Lock()

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _device_buffer(self, name: str, nbytes: int) -> int:
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                cuda_check(self._cudart.cudaFree(pointer), "cudaFree")
            pointer = cuda_check(self._cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Embed one preprocessed batch (N <= max_batch) and return (N, D) float32.

        One execution context, stream and set of device buffers serve every call, so calls
        take turns (the HTTP service calls from several threads)."""
        with self._run_lock:
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape[0] > self._max_batch:
            raise KdasError(
                f"batch of {batch.shape[0]} exceeds the engine's profile maximum "
                f"{self._max_batch}: lower the batch size or rebuild the engine"
            )
        if not self._context.set_input_shape(self._input, batch.shape):
            raise KdasError(f"TensorRT engine {self.path} rejects input shape {batch.shape}")
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        output = np.empty(out_shape, dtype=np.float32)
        d_in = self._device_buffer(self._input, batch.nbytes)
        d_out = self._device_buffer(self._output, output.nbytes)
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(
            cudart.cudaMemcpyAsync(d_in, batch.ctypes.data, batch.nbytes, to_device, self._stream),
            "cudaMemcpyAsync",
        )
        self._context.set_tensor_address(self._input, d_in)
        self._context.set_tensor_address(self._output, d_out)
        if not self._context.execute_async_v3(self._stream):
            raise KdasError(f"TensorRT engine {self.path} failed to run")
        cuda_check(
            cudart.cudaMemcpyAsync(output.ctypes.data, d_out, output.nbytes, to_host, self._stream),
            "cudaMemcpyAsync",
        )
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return output

    def close(self) -> None:
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        if hasattr(self, "_cudart"):
            with contextlib.suppress(Exception):  # at shutdown CUDA may already be gone
                self.close()
