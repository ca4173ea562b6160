"""Hand-made latency tables for the tests (not a test module itself): every entry follows a
simple rule, so a prediction can be checked against a sum written out independently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kdas.models.latency_table import LatencyTable, TableMacro, machine_fingerprint, op_key

# ms per 1,000 output elements of an edge: expensive dense ops, cheap parameter-free ones
UNIT_COST = {
    "skip_connect": 0.01,
    "max_pool_3x3": 0.02,
    "avg_pool_3x3": 0.02,
    "sep_conv_3x3": 0.5,
    "dil_conv_3x3": 0.4,
    "part_aware": 0.3,
    "conv_3x3": 1.0,
}


def edge_cost(op: str, C: int, H: int, W: int, stride: int, unit: Mapping[str, float]) -> float:
    out = C * -(-H // stride) * -(-W // stride)
    return unit[op] * out / 1000.0


def hand_table(
    macro: TableMacro,
    size: tuple[int, int],
    ops: Sequence[str] = tuple(UNIT_COST),
    unit: Mapping[str, float] = UNIT_COST,
    teacher_ms: float | None = 10.0,
    backend: str = "ort-fp32",
) -> LatencyTable:
    """A table for `macro` at `size` whose op entries follow `unit` and whose fixed costs are
    1 ms (stem), 0.5 ms (head) and 0.1 ms per preprocessing block, fingerprinted as this
    machine."""
    entries: dict[str, float] = {}
    fixed = {"stem": 1.0, "head": 0.5}
    for place in macro.places(size):
        for C, H, W, stride in place.edge_shapes():
            for op in ops:
                if op != "none":
                    entries[op_key(op, C, H, W, stride)] = edge_cost(op, C, H, W, stride, unit)
        for k in (0, 1):
            fixed[f"cell{place.index}.preprocess{k}"] = 0.1
    return LatencyTable(
        fingerprint=machine_fingerprint(backend, threads=2, batch=1),
        input_size=size,
        macro=macro,
        ops=entries,
        fixed=fixed,
        teacher={"name": "resnet50", "ms": teacher_ms} if teacher_ms else None,
    )


def search_table(cfg: Any, ops: Sequence[str], C: int = 16) -> LatencyTable:
    """A hand table for a search config's supernet structure and input size, at width `C`."""
    m = cfg.model
    macro = TableMacro(C=C, layers=m.layers, reduction_positions=m.reduction_positions,
                       steps=m.steps, multiplier=m.multiplier)  # fmt: skip
    return hand_table(macro, tuple(cfg.data.size), ops=ops)
