"""OpenVINO IR export: fp32, bf16 (an inference hint) and INT8, from kdas's fp32 ONNX export.

- fp32: `openvino.convert_model` on the ONNX file; weights stay fp32 (no fp16 compression), so
  the IR computes what the ONNX graph computes.
- bf16: the same IR; its metadata asks the runtime for bf16 inference (AMX/avx512_bf16 CPUs).
  bf16 is a property of how the CPU plugin runs the graph, not of the stored weights.
- INT8 (default `int8_source="qdq"`): OpenVINO reads kdas's QDQ INT8 ONNX (the ONNX Runtime
  recipe: BN folded, S8 per-channel weights, U8 activations, L2 normalisation in float), so ORT
  and OpenVINO deploy the same quantized numbers. `int8_source="nncf"` runs NNCF post-training
  quantization of the fp32 IR instead. Both calibrate on the same training images;
  docs/deployment.md gives the measurement behind the default.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdas.errors import BackendUnavailable, KdasError
from kdas.export.calibration import CalibrationBatches
from kdas.export.metadata import read_metadata, with_precision
from kdas.runtime.model_meta import EmbeddingModelInfo
from kdas.runtime.openvino_model import check_precision_supported, import_openvino, save_ir

OPENVINO_PRECISIONS = ("fp32", "bf16", "int8")
INT8_SOURCES = ("nncf", "qdq")
DEFAULT_INT8_SOURCE = "qdq"  # measured: docs/deployment.md, "Which INT8 for OpenVINO"


def import_nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise BackendUnavailable(
            "OpenVINO INT8 uses NNCF: install it with `pip install 'kdas[openvino]'`"
        ) from None
    return nncf


def _onnx_info(path: Path) -> EmbeddingModelInfo:
    from kdas.export.graph import import_onnx

    return read_metadata(import_onnx().load(str(path), load_external_data=False), str(path))


def _normalisation_scope(model: Any, output_name: str) -> list[str]:
    """The nodes after the last matrix op (the L2 normalisation): they stay in float."""
    tail = {"ReduceL2", "Divide", "Maximum", "Sqrt", "ReduceSum", "Power", "Multiply", "Clamp"}
    names: list[str] = []
    node = model.output(output_name).get_node()
    while node.get_type_name() in tail or node.get_type_name() == "Result":
        if node.get_type_name() != "Result":
            names.append(node.get_friendly_name())
        if node.get_input_size() == 0:
            break
        node = node.input_value(0).get_node()
    return names


def quantize_nncf(
    model: Any, info: EmbeddingModelInfo, calibration_paths: list[str], batch_size: int = 1
) -> Any:
    """NNCF post-training INT8 (mixed preset: symmetric weights, asymmetric activations) of an
    fp32 OpenVINO model, calibrated on the given training images."""
    nncf = import_nncf()
    if not calibration_paths:
        raise KdasError("INT8 quantization needs calibration images (none were given)")
    batches = list(CalibrationBatches(calibration_paths, info, batch_size))
    dataset = nncf.Dataset(batches, lambda batch: {info.input_name: batch})
    ignored = _normalisation_scope(model, info.output_name)
    return nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration_paths),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
    )


def export_openvino(
    fp32_onnx: str | os.PathLike[str],
    target: str | os.PathLike[str],
    precision: str = "fp32",
    calibration_paths: list[str] | None = None,
    int8_onnx: str | os.PathLike[str] | None = None,
    int8_source: str = DEFAULT_INT8_SOURCE,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an IR of `precision` from kdas's fp32 ONNX (or, for `int8_source="qdq"`, from its
    QDQ INT8 ONNX `int8_onnx`). `extra` goes into rt_info beside the model info (genotype)."""
    if precision not in OPENVINO_PRECISIONS:
        raise KdasError(f"unknown OpenVINO precision {precision!r}: use {OPENVINO_PRECISIONS}")
    if int8_source not in INT8_SOURCES:
        raise KdasError(f"unknown INT8 source {int8_source!r}: use {INT8_SOURCES}")
    ov = import_openvino()
    if precision == "bf16":
        check_precision_supported("bf16")
    with tempfile.TemporaryDirectory(prefix="kdas-ov-") as tmp:
        source = Path(fp32_onnx)
        if precision == "int8" and int8_source == "qdq":
            source = Path(int8_onnx) if int8_onnx else _qdq(source, calibration_paths, Path(tmp))
        return _convert_and_save(
            ov, source, target, precision, calibration_paths, int8_source, extra
        )


def _qdq(fp32_onnx: Path, calibration_paths: list[str] | None, work: Path) -> Path:
    from kdas.export.quantize import quantize_int8

    if not calibration_paths:
        raise KdasError("INT8 quantization needs calibration images (none were given)")
    return quantize_int8(fp32_onnx, work / "int8.onnx", calibration_paths)


def _convert_and_save(
    ov: Any,
    source: Path,
    target: str | os.PathLike[str],
    precision: str,
    calibration_paths: list[str] | None,
    int8_source: str,
    extra: Mapping[str, Any] | None,
) -> Path:
    info = _onnx_info(source)
    try:
        model = ov.convert_model(str(source))
    except Exception as exc:
        first = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
        raise KdasError(f"OpenVINO cannot convert {source}: {first}") from None
    if precision == "int8" and int8_source == "nncf":
        model = quantize_nncf(model, info, calibration_paths or [])
    return save_ir(model, target, with_precision(info, precision), extra)
