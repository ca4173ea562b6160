"""Latency tables: what every candidate op costs at every place of the macro structure, on one
deployment target, and the predictions read from them.

A table is data, written by `kdas latency profile` (`kdas.export.latency_profile`, which times
each block through the real backend) and read by the hardware-aware search (which never imports
`export`). It is keyed by *place* (cell index, edge stride), not by width: the supernet is
searched narrower than the student is deployed, and the table holds the deployed widths.

The prediction for a genotype is the sum of its edges' entries plus the fixed costs (stem, each
cell's input preprocessing, head), then the table's linear correction `a * sum + b`, fitted on a
few whole networks, because the backend fuses across block borders and a sum of isolated blocks
is biased. The fingerprint says where the table is true; `check_fingerprint` refuses a table
from another machine kind unless the caller allows it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdas.errors import KdasError
from kdas.utils.atomic import atomic_write_json
from kdas.utils.machine import cpu_matrix_flags, cpu_model, gpu_name, package_version

TABLE_FORMAT = "kdas-latency-table"
TABLE_VERSION = 1
FREE_OPS = ("none",)  # ops that cost nothing in the deployed graph

# Backend -> (runtime package, precision, device kind).
LATENCY_BACKENDS: dict[str, tuple[str, str, str]] = {
    "ort-fp32": ("onnxruntime", "fp32", "cpu"),
    "ort-int8": ("onnxruntime", "int8", "cpu"),
    "openvino-fp32": ("openvino", "fp32", "cpu"),
    "openvino-bf16": ("openvino", "bf16", "cpu"),
    "openvino-int8": ("openvino", "int8", "cpu"),
    "tensorrt-fp16": ("tensorrt", "fp16", "gpu"),
    "tensorrt-int8": ("tensorrt", "int8", "gpu"),
}
# Fingerprint fields that must match for a table to be trusted (threads and batch are the
# table's own settings: they are compared with what the caller asks for, not the machine).
MACHINE_FIELDS = ("device", "cpu_flags", "backend", "backend_version")


def check_backend(backend: str) -> tuple[str, str, str]:
    if backend not in LATENCY_BACKENDS:
        raise KdasError(
            f"unknown latency backend {backend!r}: choose from {', '.join(LATENCY_BACKENDS)}"
        )
    return LATENCY_BACKENDS[backend]


def machine_fingerprint(backend: str, threads: int, batch: int) -> dict[str, Any]:
    """This machine as a table for `backend` would record it."""
    runtime, precision, kind = check_backend(backend)
    device = gpu_name() if kind == "gpu" else cpu_model()
    return {
        "device": device or "no CUDA GPU",
        "cpu_flags": list(cpu_matrix_flags()) if kind == "cpu" else [],
        "backend": backend,
        "backend_version": package_version(runtime),
        "precision": precision,
        "threads": int(threads),
        "batch": int(batch),
    }


# ---------------------------------------------------------------- where ops run


@dataclass(frozen=True)
class CellPlace:
    """One cell of the macro structure at the deployed width: what its ops and inputs see.

    `H`, `W` are the resolution of the cell's (preprocessed) inputs; a reduction cell's edges
    from its two inputs run at stride 2 there, its other edges at stride 1 on the halved size.
    """

    index: int
    reduction: bool
    reduction_prev: bool
    C: int
    C_prev_prev: int
    C_prev: int
    H: int
    W: int
    H_prev_prev: int  # resolution of the first input (before the previous reduction, if any)
    W_prev_prev: int

    def edge_shape(self, input_index: int) -> tuple[int, int, int, int]:
        """(C, H, W, stride) of an edge leaving state `input_index` (0, 1: the cell inputs)."""
        if self.reduction and input_index < 2:
            return self.C, self.H, self.W, 2
        if self.reduction:
            return self.C, math.ceil(self.H / 2), math.ceil(self.W / 2), 1
        return self.C, self.H, self.W, 1

    def edge_shapes(self) -> tuple[tuple[int, int, int, int], ...]:
        """The distinct edge shapes of this cell (one for a normal cell, two for a reduction)."""
        return tuple(dict.fromkeys(self.edge_shape(j) for j in (0, 2)))

    def preprocess(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The two input-preprocessing blocks: (kind, C_in, C_out, H, W of their input)."""
        kind = "factorized_reduce" if self.reduction_prev else "relu_conv_bn"
        first = {"kind": kind, "C_in": self.C_prev_prev, "H": self.H_prev_prev}
        first["W"] = self.W_prev_prev
        second = {"kind": "relu_conv_bn", "C_in": self.C_prev, "H": self.H, "W": self.W}
        return {**first, "C_out": self.C}, {**second, "C_out": self.C}


@dataclass(frozen=True)
class TableMacro:
    """The macro structure a table was measured for (deployed width C)."""

    C: int
    layers: int = 8
    reduction_positions: tuple[int, ...] = (2, 4, 6)
    stem_multiplier: int = 3
    steps: int = 4
    multiplier: int = 4

    def stem_channels(self) -> int:
        return self.stem_multiplier * self.C

    def places(self, input_size: Sequence[int]) -> list[CellPlace]:
        """Every cell's place, following `kdas.models.macro.CellStack` (stem: stride 4)."""
        H, W = (math.ceil(math.ceil(int(s) / 2) / 2) for s in input_size)
        H_pp, W_pp = H, W
        C_pp = C_p = self.stem_channels()
        C_cur, reduction_prev, places = self.C, False, []
        for i in range(self.layers):
            reduction = i in self.reduction_positions
            C_cur = 2 * C_cur if reduction else C_cur
            places.append(
                CellPlace(i, reduction, reduction_prev, C_cur, C_pp, C_p, H, W, H_pp, W_pp)
            )
            C_pp, C_p = C_p, self.multiplier * C_cur
            H_pp, W_pp = H, W
            if reduction:
                H, W = math.ceil(H / 2), math.ceil(W / 2)
            reduction_prev = reduction
        return places

    def output_shape(self, input_size: Sequence[int]) -> tuple[int, int, int]:
        """(channels, H, W) of the last cell's output: the head's input."""
        last = self.places(input_size)[-1]
        C, H, W, _ = last.edge_shape(2)
        return self.multiplier * C, H, W

    def check_matches(self, arch: Any, where: str) -> None:
        """The supernet or student `arch` must have this structure (its C may differ: the table
        holds the deployed width, the supernet is searched narrower)."""
        mine = {f: getattr(self, f) for f in ("layers", "stem_multiplier", "steps", "multiplier")}
        mine["reduction_positions"] = tuple(sorted(self.reduction_positions))
        for name, value in mine.items():
            theirs = getattr(arch, name, None)
            if theirs is None:
                continue
            if name == "reduction_positions":
                theirs = tuple(sorted(int(p) for p in theirs))
            if theirs != value:
                raise KdasError(
                    f"{where}: the latency table was measured for {name} = {value}, the network "
                    f"has {theirs}: profile a table for this structure (kdas latency profile --C, "
                    "--layers, --reductions)"
                )


def op_key(op: str, C: int, H: int, W: int, stride: int) -> str:
    return f"{op}|{C}|{H}x{W}|s{stride}"


@dataclass
class Correction:
    """measured ≈ a · (sum of table entries) + b, fitted on `networks` whole networks."""

    a: float = 1.0
    b: float = 0.0
    networks: int = 0  # 0: not fitted, the plain sum is used
    median_abs_error: float | None = None  # relative, on the fitting networks

    def apply(self, raw_ms: float) -> float:
        """A fitted negative offset must not predict a negative time for a very cheap cell."""
        return max(0.0, self.a * raw_ms + self.b)


@dataclass
class LatencyPrediction:
    raw_ms: float  # the plain sum of table entries
    ms: float  # after the linear correction
    edges_ms: float
    fixed_ms: float


@dataclass
class LatencyTable:
    fingerprint: dict[str, Any]
    input_size: tuple[int, int]
    macro: TableMacro
    ops: dict[str, float]  # op_key(...) -> ms
    fixed: dict[str, float]  # "stem", "head", "cell{i}.preprocess{0,1}" -> ms
    teacher: dict[str, Any] | None = None  # {"name": ..., "ms": ...}
    correction: Correction = field(default_factory=Correction)
    call_overhead_ms: float = 0.0  # subtracted from every block's time
    settings: dict[str, Any] = field(default_factory=dict)  # repeats, warmup, dates, kdas
    path: Path | None = None

    @property
    def backend(self) -> str:
        return str(self.fingerprint.get("backend"))

    def places(self) -> list[CellPlace]:
        return self.macro.places(self.input_size)

    def op_ms(self, op: str, C: int, H: int, W: int, stride: int) -> float:
        if op in FREE_OPS:
            return 0.0
        key = op_key(op, C, H, W, stride)
        if key not in self.ops:
            raise KdasError(
                f"latency table {self.where()}: no entry for op {op!r} at C={C}, {H}x{W}, "
                f"stride {stride}: profile it with this op in --ops"
            )
        return self.ops[key]

    def table_ops(self) -> set[str]:
        return {key.split("|", 1)[0] for key in self.ops} | set(FREE_OPS)

    def check_ops(self, primitives: Sequence[str]) -> None:
        missing = [op for op in primitives if op not in self.table_ops()]
        if missing:
            raise KdasError(
                f"latency table {self.where()} has no entries for {', '.join(missing)}: profile "
                "it with the search's op set (kdas latency profile --ops ...)"
            )

    def fixed_ms(self) -> float:
        return float(sum(self.fixed.values()))

    def predict(self, genotype: Any) -> LatencyPrediction:
        """The predicted latency of a static student with this `genotype` (a
        `kdas.models.genotype.Genotype`) at the table's width and input size."""
        if genotype.steps != self.macro.steps:
            raise KdasError(
                f"latency table {self.where()}: measured for {self.macro.steps}-node cells, the "
                f"genotype has {genotype.steps}"
            )
        edges = 0.0
        for place in self.places():
            pairs = genotype.reduce if place.reduction else genotype.normal
            for op, j in pairs:
                C, H, W, stride = place.edge_shape(j)
                edges += self.op_ms(op, C, H, W, stride)
        raw = edges + self.fixed_ms()
        return LatencyPrediction(raw, self.correction.apply(raw), edges, self.fixed_ms())

    def resolve_target(self, target: str | float) -> float:
        """A budget in ms: a number, "4.5ms", or "0.3x-teacher" (the table's teacher time)."""
        return parse_target(target, self)

    def where(self) -> str:
        return str(self.path) if self.path else f"({self.backend})"

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "fingerprint": self.fingerprint,
            "input_size": list(self.input_size),
            "macro": dataclasses.asdict(self.macro),
            "unit": "ms",
            "call_overhead_ms": self.call_overhead_ms,
            "ops": dict(sorted(self.ops.items())),
            "fixed": self.fixed,
            "teacher": self.teacher,
            "correction": dataclasses.asdict(self.correction),
            "settings": self.settings,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        self.path = atomic_write_json(path, self.to_dict())
        return self.path


_TARGET = re.compile(r"^\s*(?P<value>\d+(\.\d*)?|\.\d+)\s*(?P<unit>ms|x-teacher)?\s*$")


def parse_target(target: str | float, table: LatencyTable | None = None) -> float:
    """`target` in ms. "0.3x-teacher" needs a table that holds the teacher's latency."""
    if isinstance(target, int | float) and not isinstance(target, bool):
        value, unit = float(target), "ms"
    else:
        match = _TARGET.match(str(target))
        if not match:
            raise KdasError(
                f"latency target {target!r}: give milliseconds (e.g. 4.5 or 4.5ms) or a share "
                "of the teacher's latency (e.g. 0.3x-teacher)"
            )
        value, unit = float(match["value"]), match["unit"] or "ms"
    if not value > 0:
        raise KdasError(f"latency target must be positive, got {target!r}")
    if unit == "ms":
        return value
    if table is None or not table.teacher or not table.teacher.get("ms"):
        where = table.where() if table else ""
        raise KdasError(
            f"latency target {target!r} is relative to the teacher, but the latency table "
            f"{where} holds no teacher measurement: profile with --teacher, or give ms"
        )
    return value * float(table.teacher["ms"])


def _number_map(value: Any, name: str, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise KdasError(f"{where}: {name!r} must be an object of name -> milliseconds")
    out = {}
    for key, ms in value.items():
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not ms >= 0:
            raise KdasError(f"{where}: {name}[{key!r}] must be a non-negative number, got {ms!r}")
        out[str(key)] = float(ms)
    return out


def _from_document(doc: Mapping[str, Any], where: str) -> LatencyTable:
    if doc.get("format") != TABLE_FORMAT:
        raise KdasError(f"{where}: format is {doc.get('format')!r}, expected {TABLE_FORMAT!r}")
    if doc.get("version") != TABLE_VERSION:
        raise KdasError(
            f"{where}: unsupported latency table version {doc.get('version')!r} "
            f"(this kdas reads {TABLE_VERSION})"
        )
    missing = [k for k in ("fingerprint", "input_size", "macro", "ops", "fixed") if k not in doc]
    if missing:
        raise KdasError(f"{where}: missing {missing[0]!r}")
    try:
        macro_doc = dict(doc["macro"])
        macro_doc["reduction_positions"] = tuple(macro_doc.get("reduction_positions", ()))
        macro = TableMacro(**macro_doc)
        size = tuple(int(s) for s in doc["input_size"])
        correction = Correction(**(doc.get("correction") or {}))
    except (TypeError, ValueError) as exc:
        raise KdasError(f"{where}: malformed table ({exc})") from None
    if len(size) != 2 or min(size) < 1:
        raise KdasError(f"{where}: input_size must be [height, width], got {doc['input_size']!r}")
    fingerprint = doc["fingerprint"]
    if not isinstance(fingerprint, Mapping) or fingerprint.get("backend") not in LATENCY_BACKENDS:
        raise KdasError(f"{where}: fingerprint must name one of {', '.join(LATENCY_BACKENDS)}")
    return LatencyTable(
        fingerprint=dict(fingerprint),
        input_size=(size[0], size[1]),
        macro=macro,
        ops=_number_map(doc["ops"], "ops", where),
        fixed=_number_map(doc["fixed"], "fixed", where),
        teacher=doc.get("teacher"),
        correction=correction,
        call_overhead_ms=float(doc.get("call_overhead_ms", 0.0)),
        settings=dict(doc.get("settings") or {}),
    )


def load_latency_table(path: str | os.PathLike[str]) -> LatencyTable:
    """A validated table from its JSON file; one clear line for whatever is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise KdasError(
            f"latency table not found: {path} (make one with `kdas latency profile --out {path}`)"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdasError(f"latency table {path} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise KdasError(f"latency table {path}: expected a JSON object")
    table = _from_document(doc, f"latency table {path}")
    table.path = path
    return table


def fingerprint_mismatch(table: LatencyTable) -> list[str]:
    """The machine fields in which this machine differs from the table's (empty: it matches)."""
    fp = table.fingerprint
    here = machine_fingerprint(table.backend, int(fp.get("threads", 1)), int(fp.get("batch", 1)))
    return [
        f"{name} {fp.get(name)!r} vs here {here[name]!r}"
        for name in MACHINE_FIELDS
        if fp.get(name) != here[name]
    ]


def check_fingerprint(table: LatencyTable, allow_foreign: bool = False) -> list[str]:
    """Refuse a table measured on another machine kind (unless `allow_foreign`); returns the
    differences so a caller that allowed them can log them."""
    differences = fingerprint_mismatch(table)
    if differences and not allow_foreign:
        raise KdasError(
            f"latency table {table.where()} was measured elsewhere ({'; '.join(differences)}): "
            "profile one here with `kdas latency profile`, or pass --allow-foreign-lut"
        )
    return differences
