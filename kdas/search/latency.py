"""The latency term of the hardware-aware search: E[latency] under α, from a latency table.

Only two incoming edges per node survive derivation, so an edge's expected op latency
Σ softmax(α)·lat(op) is weighted by the edge's share of its node's strength (its largest
non-`none` weight, the derivation rule), normalised so that a node's shares sum to 2:

    E[lat] = fixed + Σ cells Σ nodes Σ incoming edges  share(e) · Σ_op softmax(α_e)_op · lat(op)

α is shared by all cells of one type, so the per-place latencies of the normal cells (and of
the reduction cells) are summed once into an edges × ops matrix; E[lat] is then two weighted
sums, differentiable in α and negligible next to a supernet step. The table's linear
correction is applied to the expectation, so it is in the same units as the predictions.

The term is a hinge on the budget in log space, λ · relu(log(E[lat] / target)) (the form of
FBNet's log-latency factor, cut at the budget as in ProxylessNAS's latency-constrained use): it
is zero under the budget, so accuracy alone decides there, and it is scale-free above it, so one
λ means the same for a 2 ms edge target and a 20 ms GPU one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kdas.errors import KdasError
from kdas.models.genotype import edge_list, num_edges
from kdas.models.latency_table import LatencyTable, check_fingerprint, load_latency_table
from kdas.models.ops import NONE
from kdas.progress import console


def place_matrices(
    table: LatencyTable, primitives: Sequence[str], steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normal, reduce): edges × primitives latency in ms, summed over the cells of that type."""
    table.check_ops(primitives)
    edges = edge_list(steps)
    sums = {False: torch.zeros(num_edges(steps), len(primitives), dtype=torch.float64)}
    sums[True] = sums[False].clone()
    for place in table.places():
        matrix = sums[place.reduction]
        for e, (_, j) in enumerate(edges):
            C, H, W, stride = place.edge_shape(j)
            for k, op in enumerate(primitives):
                matrix[e, k] += table.op_ms(op, C, H, W, stride)
    return sums[False].float(), sums[True].float()


def edge_shares(weights: torch.Tensor, primitives: Sequence[str], steps: int) -> torch.Tensor:
    """Each edge's share of its node's strength, ×2 (a node keeps two edges): (edges,)."""
    keep = [k for k, op in enumerate(primitives) if op != NONE]
    strength = weights[:, keep].max(dim=1).values
    shares = []
    start = 0
    for node in range(steps):
        block = strength[start : start + 2 + node]
        shares.append(2.0 * block / block.sum().clamp_min(1e-12))
        start += 2 + node
    return torch.cat(shares)


@dataclass
class LatencyTermOutput:
    total: torch.Tensor  # λ · hinge, differentiable in α
    expected_ms: float  # corrected E[lat]
    hinge: float


class ExpectedLatency(torch.nn.Module):
    """E[lat](α) in ms (corrected) for one supernet structure and one table."""

    def __init__(self, table: LatencyTable, primitives: Sequence[str], steps: int) -> None:
        super().__init__()
        self.primitives = tuple(primitives)
        self.steps = steps
        normal, reduce = place_matrices(table, self.primitives, steps)
        self.register_buffer("normal_ms", normal, persistent=False)
        self.register_buffer("reduce_ms", reduce, persistent=False)
        self.fixed_ms = table.fixed_ms()
        self.a, self.b = table.correction.a, table.correction.b

    def raw(self, alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor) -> torch.Tensor:
        total = alpha_normal.new_tensor(self.fixed_ms)
        for alpha, ms in ((alpha_normal, self.normal_ms), (alpha_reduce, self.reduce_ms)):
            weights = torch.softmax(alpha, dim=-1)
            shares = edge_shares(weights, self.primitives, self.steps)
            total = total + (shares * (weights * ms.to(weights)).sum(dim=1)).sum()
        return total

    def forward(self, alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor) -> torch.Tensor:
        return self.a * self.raw(alpha_normal, alpha_reduce) + self.b


class LatencyTerm:
    """The named latency term of the α objective: λ · relu(log(E[lat] / target))."""

    name = "latency"

    def __init__(
        self, table: LatencyTable, primitives: Sequence[str], steps: int, target_ms: float,
        weight: float,
    ) -> None:  # fmt: skip
        if not target_ms > 0:
            raise KdasError(f"latency target must be positive, got {target_ms}")
        if weight < 0:
            raise KdasError(f"latency weight must be >= 0, got {weight}")
        self.table = table
        self.expected = ExpectedLatency(table, primitives, steps)
        self.target_ms = float(target_ms)
        self.weight = float(weight)

    def __call__(self, alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor) -> LatencyTermOutput:
        expected = self.expected(alpha_normal, alpha_reduce).clamp_min(1e-6)
        hinge = torch.relu(torch.log(expected / self.target_ms))
        total = self.weight * hinge
        return LatencyTermOutput(total, float(expected.detach()), float(hinge.detach()))

    def predicted_ms(self, genotype: Any) -> float:
        """The derived genotype's latency from the table (corrected)."""
        return self.table.predict(genotype).ms


def build_latency_term(cfg: Any, primitives: Sequence[str], arch: Any) -> LatencyTerm | None:
    """The term a search config asks for (`SearchConfig.latency`), or None when it asks for
    none. The table must come from this machine kind unless the config allows a foreign one."""
    lat = cfg.latency
    if not lat.table and not lat.target:
        return None
    if not lat.table or not lat.target:
        missing = "--latency-target" if lat.table else "--latency-table"
        raise KdasError(f"a latency-aware search needs both a table and a target: add {missing}")
    table = load_latency_table(lat.table)
    differences = check_fingerprint(table, allow_foreign=lat.allow_foreign)
    if differences:
        console.log(f"[yellow]foreign latency table accepted[/]: {'; '.join(differences)}")
    table.macro.check_matches(arch, f"latency table {table.where()}")
    target = table.resolve_target(lat.target)
    if not math.isfinite(target):
        raise KdasError(f"latency target {lat.target!r} is not a finite number of ms")
    floor = table.correction.apply(table.fixed_ms())
    if target < floor:
        console.log(
            f"[yellow]latency target {target:.2f} ms is below the {floor:.2f} ms that stem, "
            f"input preprocessing and head cost at C={table.macro.C} on their own[/]: no cell "
            "can meet it; search a shallower student (model.layers, with a table from "
            "kdas latency profile --layers --reductions)"
        )
    return LatencyTerm(table, primitives, arch.steps, target, lat.weight)
