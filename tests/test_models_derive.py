"""Deriving the genotype from α: the DARTS rule on hand-made α, ties, the skip cap, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdas.errors import KdasError
from kdas.models.derive import derive_genotype
from kdas.models.genotype import count_skips
from kdas.models.ops import PRIMITIVES

COL = {name: k for k, name in enumerate(PRIMITIVES)}


def _alpha(rows: int, entries: dict[tuple[int, str], float]) -> np.ndarray:
    """Zero logits except the given (edge row, op) entries."""
    alpha = np.zeros((rows, len(PRIMITIVES)))
    for (row, op), value in entries.items():
        alpha[row, COL[op]] = value
    return alpha


def test_none_never_chosen_and_ignored_for_edge_strength() -> None:
    # rows: (n0,in0) (n0,in1) (n1,in0) (n1,in1) (n1,in2)
    normal = _alpha(
        5,
        {
            (0, "none"): 5.0,  # none dominates, yet the op is the best non-none one
            (0, "dil_conv_3x3"): 1.0,
            (1, "sep_conv_3x3"): 2.0,
            (2, "none"): 3.0,  # none argmax; sep weight ~0.42 -> strongest edge of node 1
            (2, "sep_conv_3x3"): 2.9,
            (3, "avg_pool_3x3"): 1.0,  # ~0.31
            (4, "none"): 4.0,  # none ~0.90 but best non-none ~0.02 -> dropped
        },
    )
    g = derive_genotype(normal, np.zeros((5, 7)), PRIMITIVES, steps=2)
    assert g.normal == (
        ("dil_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1),
    )
    assert g.normal_concat == (2, 3) and g.reduce_concat == (2, 3)


def test_ties_go_to_lower_input_and_earlier_primitive() -> None:
    # All equal: every node keeps inputs 0 and 1, and the first non-none primitive.
    g = derive_genotype(np.zeros((14, 7)), np.zeros((14, 7)))
    assert g.normal == (("skip_connect", 0), ("skip_connect", 1)) * 4
    assert g.reduce == g.normal and g.normal_concat == (2, 3, 4, 5)
    # Node 1: input 0 is strongest (max and avg pool tie on it); inputs 1 and 2 tie for second.
    normal = _alpha(
        5,
        {
            (2, "max_pool_3x3"): 3.0,
            (2, "avg_pool_3x3"): 3.0,
            (3, "dil_conv_3x3"): 1.0,
            (4, "dil_conv_3x3"): 1.0,
        },
    )
    g = derive_genotype(normal, np.zeros((5, 7)), steps=2)
    assert g.normal[2:] == (("max_pool_3x3", 0), ("dil_conv_3x3", 1))
    normal[3, COL["dil_conv_3x3"]] = 0.999  # break the tie the other way
    g = derive_genotype(normal, np.zeros((5, 7)), steps=2)
    assert g.normal[2:] == (("max_pool_3x3", 0), ("dil_conv_3x3", 2))


def test_skip_cap_with_ties_replaces_earliest_first() -> None:
    g = derive_genotype(np.zeros((14, 7)), np.zeros((14, 7)), max_skip_normal=2)
    assert g.normal == (
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 1),
    )
    assert count_skips(g) == 2
    assert count_skips(g, "reduce") == 8  # the cap applies to the normal cell only


def test_skip_cap_replaces_weakest_skips_by_their_best_other_op() -> None:
    normal = _alpha(
        5,
        {
            (0, "skip_connect"): 2.0,  # skip weight 0.552
            (1, "skip_connect"): 1.0,  # 0.279 (dil 0.7 is the next best)
            (1, "dil_conv_3x3"): 0.7,
            (2, "skip_connect"): 3.0,  # 0.539 (sep next)
            (2, "sep_conv_3x3"): 2.5,
            (3, "skip_connect"): 0.5,  # 0.206 (avg next)
            (3, "avg_pool_3x3"): 0.3,
        },
    )
    reduce = np.zeros((5, 7))
    uncapped = derive_genotype(normal, reduce, steps=2)
    assert uncapped.normal == (("skip_connect", 0), ("skip_connect", 1)) * 2
    assert derive_genotype(normal, reduce, steps=2, max_skip_normal=4) == uncapped
    capped3 = derive_genotype(normal, reduce, steps=2, max_skip_normal=3)
    assert capped3.normal[3] == ("avg_pool_3x3", 1) and count_skips(capped3) == 3
    expected = {
        2: (("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 1)),
        0: (("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_3x3", 0), ("avg_pool_3x3", 1)),
    }
    for cap, normal_pairs in expected.items():
        assert derive_genotype(normal, reduce, steps=2, max_skip_normal=cap).normal == normal_pairs


def test_derive_accepts_tensors_subsets_and_checks_shapes() -> None:
    alpha = np.random.default_rng(0).normal(size=(14, 7))
    from_numpy = derive_genotype(alpha, alpha[::-1].copy())
    from_torch = derive_genotype(torch.tensor(alpha), torch.tensor(alpha[::-1].copy()))
    assert from_numpy == from_torch
    subset = ("sep_conv_3x3", "none", "part_aware")
    g = derive_genotype(np.zeros((14, 3)), np.zeros((14, 3)), subset, multiplier=2)
    assert {op for op, _ in g.normal} == {"sep_conv_3x3"} and g.normal_concat == (4, 5)
    with pytest.raises(KdasError, match=r"alpha_normal: expected shape \(14, 7\).*\(14, 6\)"):
        derive_genotype(np.zeros((14, 6)), np.zeros((14, 7)))
    with pytest.raises(KdasError, match="no op to choose"):
        derive_genotype(np.zeros((5, 2)), np.zeros((5, 2)), ("none", "skip_connect"), 2, 0)
