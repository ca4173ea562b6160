"""Deployment: ONNX / TensorRT export, FP16 and INT8 conversion, parity checks, benchmarks.

Names load on first use, so `import kdas.export` stays as light as `import kdas`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_onnx": "kdas.export.onnx_export",
    "convert_fp16": "kdas.export.fp16",
    "quantize_int8": "kdas.export.quantize",
    "build_engine": "kdas.export.tensorrt_build",
    "export_model": "kdas.export.api",
    "check_parity": "kdas.export.parity",
    "run_bench": "kdas.export.bench",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdas.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
