"""Build a serialized TensorRT engine (TensorRT 10 Python API) from a kdas ONNX file.

Writes the engine and the JSON sidecar that `kdas.runtime.tensorrt_engine` reads
(`<engine>.json`: the same `kdas.*` metadata_props as the ONNX, plus build facts). INT8 either
comes from the graph (an ONNX with QuantizeLinear/DequantizeLinear nodes: explicit quantization)
or from an entropy calibrator fed with training images through the runtime's preprocessing.
This machine has no GPU, so only the absence check runs here (docs/deployment.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kdas.constants import EXPORT_PRECISIONS
from kdas.errors import BackendUnavailable, KdasError
from kdas.export.calibration import CalibrationBatches
from kdas.export.graph import import_onnx
from kdas.export.metadata import read_metadata, with_precision
from kdas.runtime.tensorrt_engine import cuda_check, import_tensorrt_backends, sidecar_candidates
from kdas.utils.atomic import atomic_write_bytes, atomic_write_json

PROFILE_BATCHES = (1, 8, 32)  # the engine's optimization profile: (min, opt, max) batch


def profile_up_to(max_batch: int) -> tuple[int, int, int]:
    """The default profile cut or stretched to end at `max_batch`."""
    if max_batch < 1:
        raise KdasError(f"--max-batch must be at least 1, got {max_batch}")
    low, opt, _ = PROFILE_BATCHES
    return low, min(opt, max_batch), max_batch


def require_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, cudart) when TensorRT, cuda-python and a CUDA device are all there;
    otherwise BackendUnavailable (exit code 2) saying which one is missing."""
    trt, cudart = import_tensorrt_backends()
    try:
        count = cuda_check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except BackendUnavailable:
        raise BackendUnavailable("TensorRT needs a CUDA GPU and none is visible here") from None
    if int(count) < 1:
        raise BackendUnavailable("TensorRT needs a CUDA GPU and none is visible here")
    return trt, cudart


def _entropy_calibrator(trt: Any, cudart: Any, batches: CalibrationBatches, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 over fixed-size batches, caching its table in `cache`."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._nbytes = batches.batch_size * 3 * batches.info.input_height * 4
            self._nbytes *= batches.info.input_width
            self._device = cuda_check(cudart.cudaMalloc(self._nbytes), "cudaMalloc")

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            if len(batch) < batches.batch_size:  # the calibrator wants full batches: wrap
                batch = np.resize(batch, (batches.batch_size, *batch.shape[1:]))
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            cuda_check(
                cudart.cudaMemcpy(self._device, batch.ctypes.data, batch.nbytes, kind),
                "cudaMemcpy",
            )
            return [int(self._device)] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            atomic_write_bytes(cache, bytes(data))

        def __del__(self) -> None:
            cudart.cudaFree(self._device)

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str = "fp16",
    calibration_paths: list[str] | None = None,
    batch_sizes: tuple[int, int, int] = PROFILE_BATCHES,
    workspace_gb: float = 4.0,
    calibration_cache: str | os.PathLike[str] | None = None,
) -> Path:
    """Build `out` (an engine for this GPU and TensorRT version) and its JSON sidecar.

    `batch_sizes` is the optimization profile (min, opt, max batch). INT8 without QDQ nodes
    in the graph needs `calibration_paths` (training images).
    """
    if precision not in EXPORT_PRECISIONS:
        raise KdasError(f"unknown TensorRT precision {precision!r}: use {EXPORT_PRECISIONS}")
    low, opt, high = batch_sizes
    if not 1 <= low <= opt <= high:
        raise KdasError(f"batch profile must satisfy 1 <= min <= opt <= max, got {batch_sizes}")
    trt, cudart = require_tensorrt()
    onnx = import_onnx()
    onnx_path, out = Path(onnx_path), Path(out)
    model = onnx.load(str(onnx_path))
    info = read_metadata(model, str(onnx_path))
    explicit_int8 = any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    if explicit_int8 and precision != "int8":
        raise KdasError(f"{onnx_path} is quantized (QDQ nodes): build it with precision int8")
    if precision == "int8" and not explicit_int8 and not calibration_paths:
        raise KdasError("TensorRT INT8 needs calibration images (--calib-data) or a QDQ ONNX")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network has an explicit batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KdasError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    chw = (3, info.input_height, info.input_width)
    profile.set_shape(info.input_name, (low, *chw), (opt, *chw), (high, *chw))
    config.add_optimization_profile(profile)
    calibrator = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not explicit_int8:
            cache = Path(calibration_cache or out.with_name(out.name + ".calib"))
            batches = CalibrationBatches(list(calibration_paths or []), info, batch_size=opt)
            calibrator = _entropy_calibrator(trt, cudart, batches, cache)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise KdasError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    atomic_write_bytes(out, bytes(serialized))
    atomic_write_json(
        sidecar_candidates(out)[0],
        {
            "metadata_props": with_precision(info, precision).to_metadata_props(),
            "tensorrt": {
                "version": str(trt.__version__),
                "source_onnx": str(onnx_path),
                "batch_profile": [low, opt, high],
                "int8": "qdq" if explicit_int8 else ("calibrated" if calibrator else None),
            },
        },
    )
    return out
