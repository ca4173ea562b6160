"""`kdas export`: one entry point from a model folder to a deployable file.

Defaults follow the run layout (architecture.md): runs/NAME/<stage>/ exports into
runs/NAME/export/<kind>.onnx, <kind>.fp16.onnx, <kind>.int8.onnx or <kind>[.fp16|.int8].engine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from kdas.constants import DEFAULT_LAYOUT, EXPORT_PRECISIONS, ONNX_OPSET
from kdas.errors import KdasError
from kdas.export.calibration import CALIBRATION_IMAGES
from kdas.export.onnx_export import default_output, export_onnx
from kdas.export.quantize import DEFAULT_CALIBRATION_METHOD
from kdas.export.tensorrt_build import PROFILE_BATCHES, profile_up_to
from kdas.files import CONFIG_FILE, ONNX_SUFFIXES
from kdas.models.artifacts import read_artifact_config

TARGETS = ("onnx", "tensorrt")


def _kind(model_dir: str | os.PathLike[str]) -> str:
    kind = (read_artifact_config(model_dir).get("model") or {}).get("kind")
    if kind not in ("teacher", "student"):
        raise KdasError(f"{model_dir}/{CONFIG_FILE} has no model kind (teacher or student)")
    return kind


def export_model(
    model_dir: str | os.PathLike[str],
    to: str = "onnx",
    out: str | os.PathLike[str] | None = None,
    opset: int = ONNX_OPSET,
    exporter: str = "auto",
    fp16: bool = False,
    int8: bool = False,
    precision: str = "fp32",
    calib_data: str | os.PathLike[str] | None = None,
    calib_layout: str = DEFAULT_LAYOUT,
    calib_images: int = CALIBRATION_IMAGES,
    calib_method: str = DEFAULT_CALIBRATION_METHOD,
    calib_options: dict[str, Any] | None = None,
    max_batch: int = PROFILE_BATCHES[-1],
    input_size: tuple[int, int] | None = None,
) -> Path:
    """Export `model_dir` and return the written file.

    to="onnx": fp32 by default, `fp16=True` (GPU) or `int8=True` (CPU, needs `calib_data`).
    to="tensorrt": an engine of `precision` fp32/fp16/int8 (int8 needs `calib_data`) for
    batches up to `max_batch`; without TensorRT or a CUDA device this raises
    BackendUnavailable before doing any work.
    """
    from kdas.export.calibration import calibration_paths

    batch_sizes = profile_up_to(max_batch)
    needs_calibration = _check_request(to, fp16, int8, precision, calib_data)
    kind = _kind(model_dir)
    paths = (
        calibration_paths(calib_data, calib_layout, calib_images, calib_options)
        if needs_calibration
        else None
    )
    if to == "onnx" and not (fp16 or int8):
        return export_onnx(model_dir, out, opset=opset, exporter=exporter, input_size=input_size)
    with tempfile.TemporaryDirectory(prefix="kdas-export-") as tmp:
        fp32 = export_onnx(
            model_dir, Path(tmp) / "fp32.onnx", opset, exporter, input_size=input_size
        )
        if to == "tensorrt":
            from kdas.export.tensorrt_build import build_engine

            suffix = ".engine" if precision == "fp32" else f".{precision}.engine"
            target = Path(out) if out else default_output(model_dir, kind, suffix)
            return build_engine(fp32, target, precision, paths, batch_sizes)
        if fp16:
            from kdas.export.fp16 import convert_fp16

            target = Path(out) if out else default_output(model_dir, kind, ONNX_SUFFIXES["fp16"])
            return convert_fp16(fp32, target)
        from kdas.export.quantize import quantize_int8

        target = Path(out) if out else default_output(model_dir, kind, ONNX_SUFFIXES["int8"])
        return quantize_int8(fp32, target, paths or [], method=calib_method)


def _check_request(
    to: str, fp16: bool, int8: bool, precision: str, calib_data: object | None
) -> bool:
    """Refuse a contradictory request before any work; True when it needs calibration."""
    if to not in TARGETS:
        raise KdasError(f"unknown export target {to!r}: use {' or '.join(TARGETS)}")
    if fp16 and int8:
        raise KdasError("choose one of --fp16 and --int8")
    if to == "tensorrt" and (fp16 or int8):
        raise KdasError("for TensorRT use --precision fp16|int8 instead of --fp16/--int8")
    needs_calibration = int8 or (to == "tensorrt" and precision == "int8")
    if needs_calibration and calib_data is None:
        raise KdasError("INT8 needs calibration images: pass --calib-data ROOT (a data set)")
    if to == "tensorrt":
        from kdas.export.tensorrt_build import require_tensorrt

        if precision not in EXPORT_PRECISIONS:
            raise KdasError(f"unknown TensorRT precision {precision!r}: use {EXPORT_PRECISIONS}")
        require_tensorrt()  # fail fast, before minutes of export work
    return needs_calibration
