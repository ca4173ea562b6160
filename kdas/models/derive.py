"""Deriving the genotype from α: the discrete architecture a finished search points to.

The paper's (DARTS') rule: softmax over the ops of each edge; each intermediate node keeps its
two strongest incoming edges (an edge's strength is its largest non-`none` weight) and, on
each, the strongest op other than `none`. An optional cap on the skip connections of the normal
cell (`max_skip_normal`) replaces the weakest surplus skips. `derive_genotype` is the one entry.

α may be torch tensors, numpy arrays or nested lists; tensors are read without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.models.genotype import Genotype, num_edges
from kdas.models.ops import NONE, OPS, PRIMITIVES, SKIP, known_ops


def _softmax_rows(alpha: Any, rows: int, columns: int, name: str) -> np.ndarray:
    if hasattr(alpha, "detach"):  # a torch tensor, without importing torch here
        alpha = alpha.detach().cpu().double().numpy()
    logits = np.asarray(alpha, dtype=np.float64)
    if logits.shape != (rows, columns):
        raise KdasError(
            f"{name}: expected shape ({rows}, {columns}) (edges x primitives), got {logits.shape}"
        )
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _best_op(row: np.ndarray, primitives: Sequence[str], exclude: set[str]) -> tuple[int, float]:
    """Column and weight of the strongest op not in `exclude`; ties go to the earlier primitive."""
    allowed = [k for k, name in enumerate(primitives) if name not in exclude]
    if not allowed:
        raise KdasError(
            f"no op to choose outside {sorted(exclude)} in primitives {list(primitives)}"
        )
    best = max(allowed, key=lambda k: (row[k], -k))
    return best, float(row[best])


def _derive_cell(
    weights: np.ndarray, primitives: Sequence[str], steps: int
) -> tuple[list[tuple[str, int]], list[int]]:
    """Pairs of one cell and, for each pair, the α row (edge) it came from."""
    pairs: list[tuple[str, int]] = []
    rows: list[int] = []
    start = 0
    for node in range(steps):
        inputs = range(2 + node)
        strength = {j: _best_op(weights[start + j], primitives, {NONE})[1] for j in inputs}
        # Two strongest inputs; a tie goes to the lower input index. Stored by input index.
        chosen = sorted(sorted(inputs, key=lambda j: (-strength[j], j))[:2])
        for j in chosen:
            column, _ = _best_op(weights[start + j], primitives, {NONE})
            pairs.append((primitives[column], j))
            rows.append(start + j)
        start += 2 + node
    return pairs, rows


def _cap_skips(
    pairs: list[tuple[str, int]],
    rows: list[int],
    weights: np.ndarray,
    primitives: Sequence[str],
    max_skips: int,
) -> list[tuple[str, int]]:
    """Replace the weakest skips until at most `max_skips` remain.

    The rule: rank the pairs whose op is `skip_connect` by their skip weight (softmax), weakest
    first, ties by position in the cell (earlier first); each of the surplus weakest keeps its
    input and takes its edge's strongest op other than `none` and `skip_connect`. Which inputs
    each node uses is not re-decided, so the topology stays the one α chose.
    """
    if SKIP not in primitives:
        return pairs
    skip_column = list(primitives).index(SKIP)
    skip_positions = [pos for pos, (op, _) in enumerate(pairs) if op == SKIP]
    surplus = len(skip_positions) - max_skips
    if surplus <= 0:
        return pairs
    weakest = sorted(skip_positions, key=lambda pos: (weights[rows[pos], skip_column], pos))
    capped = list(pairs)
    for pos in weakest[:surplus]:
        column, _ = _best_op(weights[rows[pos]], primitives, {NONE, SKIP})
        capped[pos] = (primitives[column], pairs[pos][1])
    return capped


def derive_genotype(
    alpha_normal: Any,
    alpha_reduce: Any,
    primitives: Sequence[str] = PRIMITIVES,
    steps: int = 4,
    max_skip_normal: int | None = None,
    multiplier: int | None = None,
) -> Genotype:
    """The discrete architecture α points to (DARTS rule).

    Softmax over ops per edge; an edge's strength is its largest non-`none` weight; each node
    keeps its two strongest incoming edges (tie: lower input index) and on each the strongest
    non-`none` op (tie: earlier in `primitives`). Pairs are stored by ascending input index, so
    equal architectures give equal genotypes. `max_skip_normal` caps skip connections in the
    normal cell (see `_cap_skips`). The output concatenates the last `multiplier` nodes (all of
    them by default).
    """
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in OPS]
    if unknown:
        raise KdasError(f"primitives: {unknown[0]!r} is not a known op (known: {known_ops()})")
    if max_skip_normal is not None and max_skip_normal < 0:
        raise KdasError(f"max_skip_normal must be >= 0, got {max_skip_normal}")
    multiplier = steps if multiplier is None else multiplier
    if not 1 <= multiplier <= steps:
        raise KdasError(f"multiplier must be in 1..{steps}, got {multiplier}")
    shape = (num_edges(steps), len(primitives))
    w_normal = _softmax_rows(alpha_normal, *shape, name="alpha_normal")
    w_reduce = _softmax_rows(alpha_reduce, *shape, name="alpha_reduce")
    normal, normal_rows = _derive_cell(w_normal, primitives, steps)
    reduce, _ = _derive_cell(w_reduce, primitives, steps)
    if max_skip_normal is not None:
        normal = _cap_skips(normal, normal_rows, w_normal, primitives, max_skip_normal)
    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    return Genotype(
        normal=tuple(normal), normal_concat=concat, reduce=tuple(reduce), reduce_concat=concat
    )
