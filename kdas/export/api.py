"""`kdas export`: one entry point from a model folder to a deployable file.

Defaults follow the run layout (architecture.md): runs/NAME/<stage>/ exports into
runs/NAME/export/<kind>.onnx, <kind>.fp16.onnx, <kind>.int8.onnx, <kind>[.fp16|.int8].engine or
the OpenVINO IR <kind>[.bf16|.int8].xml (+ its .bin). Every argument is checked before the
export starts, so a wrong flag costs a second, not the minutes of an INT8 calibration.
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
from kdas.files import CONFIG_FILE, IR_SUFFIXES, ONNX_SUFFIXES
from kdas.models.artifacts import read_artifact_config
from kdas.utils.outputs import check_out_file

TARGETS = ("onnx", "tensorrt", "openvino")


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
    from_onnx: str | os.PathLike[str] | None = None,
) -> Path:
    """Export `model_dir` and return the written file.

    to="onnx": fp32 by default, `fp16=True` (GPU) or `int8=True` (CPU, needs `calib_data`).
    to="tensorrt": an engine of `precision` fp32/fp16/int8 (int8 needs `calib_data`) for
    batches up to `max_batch`; without TensorRT or a CUDA device this raises
    BackendUnavailable before doing any work.
    to="openvino": an IR of `precision` fp32/bf16/int8 (int8: kdas's QDQ INT8 calibrated on
    `calib_data`'s training images) converted from the fp32 ONNX export; bf16 on a CPU
    without it, or no OpenVINO, raises BackendUnavailable before doing any work. `from_onnx`
    converts that fp32 ONNX export of `model_dir` instead of exporting it again (the
    pipeline writes one IR per precision from the file its export stage just wrote).
    """
    from kdas.export.calibration import calibration_paths

    batch_sizes = profile_up_to(max_batch)
    needs_calibration = _check_request(to, fp16, int8, precision, calib_data)
    _check_out(to, out)
    kind = _kind(model_dir)
    paths = (
        calibration_paths(calib_data, calib_layout, calib_images, calib_options)
        if needs_calibration
        else None
    )
    if to == "onnx" and not (fp16 or int8):
        return export_onnx(model_dir, out, opset=opset, exporter=exporter, input_size=input_size)
    if to == "openvino" and from_onnx is not None:
        return _export_ir(model_dir, _own_fp32(model_dir, from_onnx), out, precision, paths)
    with tempfile.TemporaryDirectory(prefix="kdas-export-") as tmp:
        fp32 = export_onnx(
            model_dir, Path(tmp) / "fp32.onnx", opset, exporter, input_size=input_size
        )
        if to == "openvino":
            return _export_ir(model_dir, fp32, out, precision, paths)
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


def _export_ir(
    model_dir: str | os.PathLike[str],
    fp32_onnx: Path,
    out: str | os.PathLike[str] | None,
    precision: str,
    calibration: list[str] | None,
) -> Path:
    """The IR, with the artifact's genotype (students) and model kind in its rt_info, so a
    deployed .xml still says which architecture it runs."""
    from kdas.export.openvino_export import export_openvino

    model = read_artifact_config(model_dir).get("model") or {}
    target = Path(out) if out else default_output(model_dir, model["kind"], IR_SUFFIXES[precision])
    extra = {k: model[k] for k in ("genotype",) if model.get(k) is not None}
    extra["model_kind"] = model["kind"]
    return export_openvino(fp32_onnx, target, precision, calibration, extra=extra)


def _own_fp32(model_dir: str | os.PathLike[str], onnx_path: str | os.PathLike[str]) -> Path:
    """`onnx_path` must be an fp32 export of these very weights, or the IR would carry a
    model that is not the one its metadata names."""
    from kdas.runtime.session import read_model_info

    info = read_model_info(onnx_path)
    expected = read_artifact_config(model_dir).get("weights_sha256")
    if info.precision != "fp32":
        raise KdasError(f"{onnx_path} is a {info.precision} ONNX file: convert the fp32 export")
    if info.weights_sha256 != expected:
        raise KdasError(f"{onnx_path} was exported from other weights than {model_dir}")
    return Path(onnx_path)


def _check_request(
    to: str, fp16: bool, int8: bool, precision: str, calib_data: object | None
) -> bool:
    """Refuse a contradictory request before any work; True when it needs calibration."""
    if to not in TARGETS:
        raise KdasError(f"unknown export target {to!r}: use {', '.join(TARGETS)}")
    if fp16 and int8:
        raise KdasError("choose one of --fp16 and --int8")
    if to == "tensorrt" and (fp16 or int8):
        raise KdasError("for TensorRT use --precision fp16|int8 instead of --fp16/--int8")
    if to == "openvino" and (fp16 or int8):
        raise KdasError("for OpenVINO use --precision bf16|int8 instead of --fp16/--int8")
    needs_calibration = int8 or (to in ("tensorrt", "openvino") and precision == "int8")
    if to == "tensorrt":
        from kdas.export.tensorrt_build import require_tensorrt

        if precision not in EXPORT_PRECISIONS:
            raise KdasError(f"unknown TensorRT precision {precision!r}: use {EXPORT_PRECISIONS}")
    if to == "openvino":
        _check_openvino(precision)
    if needs_calibration and calib_data is None:
        raise KdasError("INT8 needs calibration images: pass --calib-data ROOT (a data set)")
    if to == "tensorrt":
        require_tensorrt()  # fail fast, before minutes of export work
    return needs_calibration


def _check_openvino(precision: str) -> None:
    """A known precision this machine can run, and the packages that write it."""
    from kdas.export.openvino_export import OPENVINO_PRECISIONS
    from kdas.runtime.openvino_model import check_precision_supported, import_openvino

    if precision not in OPENVINO_PRECISIONS:
        raise KdasError(
            f"unknown OpenVINO precision {precision!r}: use {', '.join(OPENVINO_PRECISIONS)}"
        )
    import_openvino()
    check_precision_supported(precision)


# The file name each target is written under, so `--out notes.txt` cannot overwrite a file
# that is not an export.
_OUT_SUFFIXES = {
    "onnx": ((".onnx",), "an ONNX model is written as NAME.onnx"),
    "openvino": ((".xml",), "an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)"),
    "tensorrt": ((".engine", ".plan"), "a TensorRT engine is written as NAME.engine"),
}


def _check_out(to: str, out: str | os.PathLike[str] | None) -> None:
    """`--out` names a file to write: not a folder, with its target's suffix, in a folder
    that exists or can be made."""
    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        raise KdasError(f"--out {out} is a folder: give the path of the file to write")
    suffixes, rule = _OUT_SUFFIXES.get(to, ((), ""))
    if suffixes and out.suffix.lower() not in suffixes:
        raise KdasError(f"--out {out}: {rule}")
    check_out_file(out)
