"""OpenVINO IR models (`.xml` + `.bin`): kdas metadata in `rt_info`, checked loading, inference.

`kdas export --to openvino` writes the IR through `save_ir`; the runtime reads it back with
`OpenVINOModel`. The IR carries the same `EmbeddingModelInfo` as an ONNX export (under the
`kdas` section of rt_info), plus the sha256 of its own `.bin`, because OpenVINO silently runs an
IR next to another model's `.bin` of the same size. Torch-free, like the rest of the runtime.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kdas.errors import BackendUnavailable, KdasError
from kdas.runtime.model_meta import PREFIX, EmbeddingModelInfo, check_input_dims
from kdas.utils.hashing import sha256_file

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
DEFAULT_DEVICE = "CPU"
RT_SECTION = "kdas"  # rt_info section that holds kdas's entries
BIN_SHA256 = "bin_sha256"  # rt_info entry: the sha256 of the .bin written beside the .xml
# OpenVINO's inference precision hint for each kdas precision of an IR. fp32 is asked for
# explicitly: on CPUs with AMX the CPU plugin would otherwise run an fp32 IR in bf16.
# int8 IRs keep the plugin's choice for the layers NNCF left unquantized.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": None}
_INSTALL_HINT = "OpenVINO is not installed: install it with `pip install 'kdas[openvino]'`"


def import_openvino() -> Any:
    """Import openvino or say, in one line, which extra installs it."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable(_INSTALL_HINT) from None
    return openvino


def is_ir_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ".xml"


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from")]
    return (useful or lines or [type(exc).__name__])[-1][:300]


def cpu_capabilities() -> list[str]:
    core = import_openvino().Core()
    return list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def check_precision_supported(precision: str, device: str = DEFAULT_DEVICE) -> None:
    """bf16 needs a CPU with AMX or avx512_bf16; say so in one line where it has neither."""
    if precision == "bf16" and device == "CPU" and "BF16" not in cpu_capabilities():
        raise BackendUnavailable(
            "this CPU has no bf16 support (AMX or avx512_bf16) for OpenVINO: use fp32 or int8"
        )


def check_device(device: str) -> str:
    """A known device name that this machine's OpenVINO can see (AUTO picks among them)."""
    name = device.upper()
    if name.split(":")[0].split(".")[0] not in DEVICES:
        raise KdasError(f"unknown OpenVINO device {device!r}: use one of {', '.join(DEVICES)}")
    if name == "AUTO":
        return name
    available = import_openvino().Core().available_devices
    if not any(d == name or d.startswith(name + ".") for d in available):
        raise BackendUnavailable(
            f"OpenVINO device {name} is not available here (available: {', '.join(available)}); "
            "only CPU is tested by kdas's CI"
        )
    return name


def set_metadata(
    model: Any, info: EmbeddingModelInfo, extra: Mapping[str, Any] | None = None
) -> None:
    """Write `info` (and JSON-ready `extra` entries, e.g. the genotype) into rt_info."""
    for key, value in info.to_metadata_props().items():
        model.set_rt_info(value, [RT_SECTION, key[len(PREFIX) :]])
    for key, value in (extra or {}).items():
        model.set_rt_info(json.dumps(value), [RT_SECTION, key])


def read_metadata(model: Any) -> dict[str, str]:
    """Every kdas rt_info entry of a read model, as `kdas.<name>` -> JSON text."""
    if not model.has_rt_info([RT_SECTION]):
        return {}
    section = model.get_rt_info([RT_SECTION])
    names = list(section.astype(dict).keys()) if hasattr(section, "astype") else []
    return {PREFIX + name: model.get_rt_info([RT_SECTION, name]).astype(str) for name in names}


def save_ir(
    model: Any,
    xml_path: str | os.PathLike[str],
    info: EmbeddingModelInfo,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `model` as `xml_path` + its `.bin`, with kdas metadata and the .bin's sha256.

    Both files are written in a temp folder beside the target and then renamed into place, so
    a crash never leaves an .xml with another model's .bin.
    """
    ov = import_openvino()
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kdas-ir-", dir=xml_path.parent) as tmp:
        draft = Path(tmp) / xml_path.name
        set_metadata(model, info, extra)
        ov.save_model(model, str(draft), compress_to_fp16=False)
        digest = sha256_file(draft.with_suffix(".bin"))
        model.set_rt_info(digest, [RT_SECTION, BIN_SHA256])
        ov.save_model(model, str(draft), compress_to_fp16=False)  # the .bin is rewritten alike
        if sha256_file(draft.with_suffix(".bin")) != digest:
            raise KdasError(f"internal: OpenVINO wrote two different .bin files for {xml_path}")
        os.replace(draft.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(draft, xml_path)
    return xml_path


def _check_files(xml_path: Path) -> Path:
    if not xml_path.is_file():
        raise KdasError(
            f"OpenVINO model {xml_path} does not exist: export one with "
            "`kdas export MODEL_DIR --to openvino`"
        )
    bin_path = xml_path.with_suffix(".bin")
    if not bin_path.is_file():
        raise KdasError(
            f"{xml_path} has no weights file {bin_path.name} beside it: copy the .xml and "
            "its .bin together"
        )
    return bin_path


def read_ir(xml_path: str | os.PathLike[str]) -> tuple[Any, EmbeddingModelInfo]:
    """Read an IR and its kdas metadata; one line for a missing/mismatched .bin or metadata."""
    ov = import_openvino()
    xml_path = Path(xml_path)
    bin_path = _check_files(xml_path)
    try:
        model = ov.Core().read_model(str(xml_path))
    except Exception as exc:  # OpenVINO raises RuntimeError with a C++ trace
        raise KdasError(
            f"cannot read OpenVINO model {xml_path}: {_first_line(exc)} (is it an IR written "
            "by `kdas export --to openvino`, with its own .bin?)"
        ) from None
    props = read_metadata(model)
    info = EmbeddingModelInfo.from_metadata_props(props, source=str(xml_path))
    expected = props.get(PREFIX + BIN_SHA256)
    if expected is None or sha256_file(bin_path) != expected:
        raise KdasError(
            f"{bin_path.name} does not belong to {xml_path.name} (its sha256 differs from the "
            "one the IR records): copy the .xml and .bin of one export together, or re-export"
        )
    return model, info


class OpenVINOModel:
    """A compiled IR with one infer request: `run(batch)` gives the raw output rows."""

    backend = "openvino"

    def __init__(
        self,
        xml_path: str | os.PathLike[str],
        device: str = DEFAULT_DEVICE,
        threads: int | None = None,
        precision_hint: str | None = None,
        performance_hint: str = "LATENCY",
    ) -> None:
        self.model_path = Path(xml_path)
        model, self.info = read_ir(self.model_path)
        self.device = check_device(device)
        hint = precision_hint or PRECISION_HINTS.get(self.info.precision)
        if self.info.precision == "bf16":
            check_precision_supported("bf16", self.device)
        config: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint}
        if hint and self.device in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = hint
        if threads is not None and self.device == "CPU":
            if threads < 1:
                raise KdasError(f"threads must be >= 1, got {threads}")
            config["INFERENCE_NUM_THREADS"] = threads
        names = [o.get_any_name() for o in model.outputs]
        inputs = [i.get_any_name() for i in model.inputs]
        if self.info.input_name not in inputs or self.info.output_name not in names:
            raise KdasError(
                f"{self.model_path}: metadata names input {self.info.input_name!r} / output "
                f"{self.info.output_name!r} but the IR has {inputs} / {names}; re-export it"
            )
        check_input_shape(model, self.info, self.model_path)
        core = import_openvino().Core()
        try:
            self._compiled = core.compile_model(model, self.device, config)
        except Exception as exc:
            raise BackendUnavailable(
                f"OpenVINO cannot compile {self.model_path.name} for {self.device}: "
                f"{_first_line(exc)}"
            ) from None
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(self.info.output_name)
        self.providers = [f"OpenVINO {self.device}"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({self.info.input_name: batch})
        return np.asarray(result[self._output])


def check_input_shape(model: Any, info: EmbeddingModelInfo, source: Path) -> None:
    """The graph's (C, H, W) must be what the metadata promises the preprocessing will give."""
    shape = model.input(info.input_name).get_partial_shape()
    if shape.rank.is_dynamic:
        return  # any rank: nothing static to disagree with
    dims = [d.get_length() if d.is_static else None for d in shape]
    check_input_dims(dims, info, str(source))
