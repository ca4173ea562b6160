"""Static INT8 quantization for CPUs with ONNX Runtime (QDQ, S8 weights per channel, U8
activations), calibrated on real training images.

`quantize_qdq` is the recipe itself on any graph and any calibration batches: `quantize_int8`
(a kdas export, training images) and the latency profile (single blocks, random tensors, whose
ranges do not change the speed) both go through it, so a block is timed as the export runs it.

The recipe that made INT8 fast on this machine kind (performance-notes.md): run
`quant_pre_process` first (shape inference + graph optimisation, which folds BatchNorm and
fuses what it can) and quantize the result; quantizing the raw export was slower than fp32.
Symbolic shape inference is skipped (it is not needed for CNNs with static H, W and it fails on
some exported graphs). The final L2 normalisation is excluded: it stays float32.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdas.errors import BackendUnavailable, KdasError
from kdas.export.calibration import CalibrationBatches
from kdas.export.graph import import_onnx, name_nodes, normalization_tail, save_single_file
from kdas.export.metadata import read_metadata, with_precision, write_metadata

if TYPE_CHECKING:
    import onnx

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "minmax"  # the one without the memory limit below
# onnxruntime's histogram calibrators (entropy, percentile) keep every activation of every
# calibration image in memory until the end: 256 images of a C=64 student at 256x128 went past
# 23 GB. MinMax keeps only per-batch minima and maxima, so it has no such limit. (Its
# CalibMaxIntermediateOutputs option must stay unset: onnxruntime 1.32 drops the collected
# batches when that count is reached instead of folding them into the ranges.)
HISTOGRAM_MAX_IMAGES = 64


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise BackendUnavailable(
            "INT8 quantization uses onnxruntime's quantization tools: `pip install 'kdas[cpu]'`"
        ) from None
    return quantization


def _reader(batches: Iterable[np.ndarray], input_name: str) -> Any:
    """An onnxruntime CalibrationDataReader over re-iterable calibration batches."""
    quantization = _quantization()

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._batches = iter(batches)

    return Reader()


def _keep_float(model: Any, l2_output: str | None) -> list[str]:
    """Nodes left in float32: the L2 normalisation (of `l2_output`, when the graph has one), and
    BatchNorms that survived folding (the BNNeck on the pooled vector: negligible work, and
    per-channel quantization does not apply to its 1-d input)."""
    leftover_bn = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"]
    tail = normalization_tail(model, l2_output) if l2_output else []
    return tail + leftover_bn


def _check_method(method: str) -> None:
    if method not in CALIBRATION_METHODS:
        raise KdasError(f"unknown calibration method {method!r}: use {CALIBRATION_METHODS}")


def quantize_qdq(
    source: str | os.PathLike[str],
    batches: Iterable[np.ndarray],
    input_name: str,
    l2_output: str | None = None,
    method: str = DEFAULT_CALIBRATION_METHOD,
) -> onnx.ModelProto:
    """The INT8 recipe on any fp32 ONNX graph: `quant_pre_process`, then static QDQ (S8
    per-channel weights, U8 activations) calibrated on `batches` (numpy arrays fed to
    `input_name`; iterated once per calibration pass, so a list, not a generator).

    Returns the quantized model without kdas metadata, so single blocks (the latency profile)
    quantize exactly as whole exports do. `l2_output` names an output whose final L2
    normalisation stays float32.
    """
    _check_method(method)
    onnx_module = import_onnx()
    quantization = _quantization()
    with tempfile.TemporaryDirectory(prefix="kdas-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        pre = onnx_module.load(str(prepared))
        name_nodes(pre)
        onnx_module.save_model(pre, str(prepared))
        quantized = Path(tmp) / "int8.onnx"
        quantization.quantize_static(
            str(prepared),
            str(quantized),
            _reader(batches, input_name),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=_keep_float(pre, l2_output),
            calibrate_method={
                "minmax": quantization.CalibrationMethod.MinMax,
                "entropy": quantization.CalibrationMethod.Entropy,
                "percentile": quantization.CalibrationMethod.Percentile,
            }[method],
        )
        return onnx_module.load(str(quantized))


def quantize_int8_batches(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    batches: Iterable[np.ndarray],
    method: str = DEFAULT_CALIBRATION_METHOD,
    described_as: str = "the given batches",
) -> Path:
    """Quantize an fp32 kdas ONNX file to INT8 (QDQ), calibrated on preprocessed NCHW float32
    `batches` (a list or another re-iterable collection); `described_as` says in the file's
    doc string what they were.

    Returns the output path; its metadata says precision "int8" and keeps every other field
    (quantization drops metadata_props, so they are written back).
    """
    onnx_module = import_onnx()
    model = onnx_module.load(str(source))
    info = read_metadata(model, str(source))
    result = quantize_qdq(source, batches, info.input_name, info.output_name, method)
    write_metadata(result, with_precision(info, "int8"))
    result.doc_string = (
        f"{model.doc_string}; INT8 QDQ (S8 per-channel weights, U8 activations, {method} "
        f"calibration on {described_as})"
    )
    return save_single_file(result, out)


def quantize_int8(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration_paths: list[str],
    method: str = DEFAULT_CALIBRATION_METHOD,
    batch_size: int = 16,
) -> Path:
    """Quantize an fp32 kdas ONNX file to INT8 (QDQ) with the given calibration images.

    Returns the output path; its metadata says precision "int8" and keeps every other field
    (quantization drops metadata_props, so they are written back).
    """
    _check_method(method)
    if not calibration_paths:
        raise KdasError("INT8 quantization needs calibration images (none were given)")
    if method != "minmax" and len(calibration_paths) > HISTOGRAM_MAX_IMAGES:
        raise KdasError(
            f"{method} calibration holds all activations of every image in memory: use at most "
            f"{HISTOGRAM_MAX_IMAGES} images with it (--calib-images), or --calib-method minmax"
        )
    info = read_metadata(import_onnx().load(str(source), load_external_data=False), str(source))
    batches = CalibrationBatches(calibration_paths, info, batch_size)
    return quantize_int8_batches(
        source, out, batches, method, described_as=f"{len(calibration_paths)} images"
    )
