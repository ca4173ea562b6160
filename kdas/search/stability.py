"""Signals of DARTS collapse, recorded every search epoch: how decided α is (its entropy) and
how many parameter-free ops the α-argmax cell holds (Zela et al. 2020; DARTS+, Liang et al.
2019)."""

from __future__ import annotations

import math
from typing import Any

import torch

from kdas.models.ops import SKIP


def alpha_entropy(weights: torch.Tensor) -> float:
    """Mean over edges of the entropy of softmax(α), divided by log(#ops): 1 is undecided
    (uniform), 0 is one op per edge."""
    ops = weights.shape[-1]
    if ops < 2:
        return 0.0
    p = weights.double().clamp_min(1e-12)
    entropy = -(p * p.log()).sum(dim=-1).mean()
    return float(entropy) / math.log(ops)


def op_counts(pairs: Any) -> dict[str, int]:
    """Skip connections and pooling ops among a cell's chosen `(op, input)` pairs."""
    ops = [op for op, _ in pairs]
    return {"skip": sum(op == SKIP for op in ops), "pool": sum("pool" in op for op in ops)}


def stability_record(alphas: dict[str, torch.Tensor], genotype: Any) -> dict[str, Any]:
    """`alphas`: softmax weights per cell type; `genotype`: the α-argmax cells, without caps."""
    return {
        "alpha_entropy": {cell: alpha_entropy(alphas[cell]) for cell in ("normal", "reduce")},
        "alpha_op_count": {
            cell: op_counts(getattr(genotype, cell)) for cell in ("normal", "reduce")
        },
    }


def early_stop_reason(record: dict[str, Any], max_skips: int | None) -> str | None:
    """DARTS+'s criterion: stop once the α-argmax normal cell holds `max_skips` skip connections."""
    if max_skips is None:
        return None
    skips = record["alpha_op_count"]["normal"]["skip"]
    if skips < max_skips:
        return None
    return (
        f"the normal cell's α holds {skips} skip connections "
        f"(search.early_stop_skips = {max_skips})"
    )
