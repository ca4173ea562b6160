"""Budget-constrained derivation: the derived cell meets the latency target whenever some cell
of the search space can.

The latency term steers α, but a short search moves α little (its entropy stays near uniform,
docs/benchmarks.md), so the argmax cell can sit far above the budget while E[lat] creeps down.
The repair is greedy: while the table's prediction exceeds the target, make the one op swap
that gives up the least α weight per millisecond saved (same edge, same input, another op other
than `none`; the normal cell's skip cap holds). It stops at the first genotype under the target,
so every edge α is sure about keeps its op. When the swaps run out above the target, no cell of
this structure meets it (its fixed costs take the budget): trading the cell's accuracy for a
budget that stays missed helps nobody, so the α-argmax cell is kept, `met` is False and
`cheapest_ms` says how close the structure can get (a shallower student is the fix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kdas.models.genotype import Genotype, count_skips, num_edges
from kdas.models.latency_table import LatencyTable
from kdas.models.ops import NONE, SKIP


@dataclass
class BudgetFit:
    genotype: Genotype
    predicted_ms: float  # the table's (corrected) prediction of `genotype`
    argmax_ms: float  # the same for the argmax cell, before any swap
    met: bool
    swaps: list[dict[str, Any]] = field(default_factory=list)
    cheapest_ms: float | None = None  # out of reach: the prediction of the cheapest cell found
    cheapest: Genotype | None = None


def _row(position: int, input_index: int) -> int:
    """The α row of a genotype pair: node `position // 2` reads input `input_index`."""
    return num_edges(position // 2) + input_index


def _with_op(genotype: Genotype, cell: str, position: int, op: str) -> Genotype:
    pairs = list(getattr(genotype, cell))
    pairs[position] = (op, pairs[position][1])
    return replace(genotype, **{cell: tuple(pairs)})


def _candidates(
    genotype: Genotype,
    weights: Mapping[str, np.ndarray],
    primitives: Sequence[str],
    max_skip_normal: int | None,
) -> list[tuple[str, int, str, float]]:
    """(cell, position, new op, α weight given up) of every allowed single swap."""
    out = []
    column = {op: k for k, op in enumerate(primitives)}
    for cell in ("normal", "reduce"):
        pairs = getattr(genotype, cell)
        capped = cell == "normal" and max_skip_normal is not None
        skips_full = capped and count_skips(genotype, cell) >= max_skip_normal
        for position, (op, j) in enumerate(pairs):
            row = weights[cell][_row(position, j)]
            for alt in primitives:
                if alt in (NONE, op) or (alt == SKIP and skips_full):
                    continue
                out.append((cell, position, alt, float(row[column[op]] - row[column[alt]])))
    return out


def fit_to_budget(
    genotype: Genotype,
    weights: Mapping[str, Any],
    primitives: Sequence[str],
    table: LatencyTable,
    target_ms: float,
    max_skip_normal: int | None = None,
) -> BudgetFit:
    """`genotype` (derived from α, whose softmax weights per cell are `weights["normal"]` and
    `weights["reduce"]`) repaired to meet `target_ms` on `table`; see the module docstring."""
    weights = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    current, swaps = genotype, []
    argmax_ms = ms = table.predict(genotype).ms
    while ms > target_ms:
        best: tuple[float, float, Genotype, tuple[str, int, str, float]] | None = None
        for candidate in _candidates(current, weights, primitives, max_skip_normal):
            cell, position, alt, lost = candidate
            trial = _with_op(current, cell, position, alt)
            saved = ms - table.predict(trial).ms
            if saved <= 1e-9:
                continue
            score = max(lost, 0.0) / saved
            if best is None or (score, -saved) < (best[0], -best[1]):
                best = (score, saved, trial, candidate)
        if best is None:
            break
        _, saved, trial, (cell, position, alt, lost) = best
        swaps.append({"cell": cell, "position": position,
                      "from": getattr(current, cell)[position][0], "to": alt,
                      "saved_ms": saved, "alpha_lost": lost})  # fmt: skip
        current, ms = trial, ms - saved
    if ms > target_ms:
        return BudgetFit(genotype, argmax_ms, argmax_ms, False, [], ms, current)
    return BudgetFit(current, ms, argmax_ms, True, swaps)
