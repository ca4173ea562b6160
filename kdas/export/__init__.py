"""Deployment: ONNX / TensorRT export, FP16 and INT8 conversion, parity checks, benchmarks.

Names load on first use, so `import kdas.export` stays as light as `import kdas`.
"""

from __future__ import annotations

from kdas.utils.lazy import lazy_getattr

_EXPORTS = {  # name: the module that defines it
    "export_model": "kdas.export.api", "export_onnx": "kdas.export.onnx_export",
    "convert_fp16": "kdas.export.fp16", "quantize_int8": "kdas.export.quantize",
    "build_engine": "kdas.export.tensorrt_build", "check_parity": "kdas.export.parity",
    "run_bench": "kdas.export.bench",
}  # fmt: skip

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
