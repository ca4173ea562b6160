"""Genotype derivation on hand-made α, JSON round trip, validation messages, DARTS tuple form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdas.errors import KdasError
from kdas.models.genotype import (
    Genotype,
    count_skips,
    derive_genotype,
    edge_list,
    genotype_to_dict,
    load_genotype,
    num_edges,
    save_genotype,
)
from kdas.models.ops import PRIMITIVES

COL = {name: k for k, name in enumerate(PRIMITIVES)}


def _alpha(rows: int, entries: dict[tuple[int, str], float]) -> np.ndarray:
    """Zero logits except the given (edge row, op) entries."""
    alpha = np.zeros((rows, len(PRIMITIVES)))
    for (row, op), value in entries.items():
        alpha[row, COL[op]] = value
    return alpha


def test_edge_order() -> None:
    assert num_edges(4) == 14 and num_edges(2) == 5
    assert edge_list(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]


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
    capped2 = derive_genotype(normal, reduce, steps=2, max_skip_normal=2)
    assert capped2.normal == (
        ("skip_connect", 0),
        ("dil_conv_3x3", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 1),
    )
    capped0 = derive_genotype(normal, reduce, steps=2, max_skip_normal=0)
    assert capped0.normal == (
        ("max_pool_3x3", 0),
        ("dil_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1),
    )


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


DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def _sample() -> Genotype:
    return load_genotype(DARTS_V2_TEXT)


def test_json_round_trip_with_alphas_and_config(tmp_path: Path) -> None:
    g = _sample()
    logits = torch.randn(14, 7)
    alphas = {"normal": torch.softmax(logits, -1), "reduce": torch.softmax(-logits, -1)}
    path = save_genotype(tmp_path / "genotype.json", g, alphas, {"epochs": 3, "seed": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["genotype.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["format"] == "kdas-genotype" and doc["version"] == 1
    assert doc["normal"][0] == ["sep_conv_3x3", 0] and doc["reduce_concat"] == [2, 3, 4, 5]
    assert doc["primitives"] == list(PRIMITIVES)
    assert np.allclose(np.sum(doc["alphas"]["normal"], axis=1), 1.0)
    assert np.allclose(doc["alphas"]["reduce"], alphas["reduce"].numpy(), atol=1e-7)
    assert doc["search_config"] == {"epochs": 3, "seed": 1}
    assert load_genotype(path) == g
    assert load_genotype(str(path)) == g
    assert load_genotype(doc) == g
    with pytest.raises(ValueError, match="softmax"):
        genotype_to_dict(g, {"normal": logits, "reduce": logits})


def _doc(**changes: object) -> dict:
    doc = genotype_to_dict(_sample())
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "normal": [
                    ["sep_conv_3x3", 0],
                    ["sep_conv_3x3", 1],
                    ["sep_conv_3x3", 0],
                    ["conv_9x9", 1],
                ]
                + [["skip_connect", 0]] * 4
            },
            r"normal\[3\]: 'conv_9x9' is not a known op \(known: none, skip_connect, ",
        ),
        (
            {
                "reduce": [["max_pool_3x3", 0]] * 4
                + [["max_pool_3x3", 4], ["skip_connect", 0]]
                + [["skip_connect", 0]] * 2
            },
            r"reduce\[4\]: input 4 is out of range for node 2 \(valid: 0..3\)",
        ),
        ({"normal": [["sep_conv_3x3", 0]] * 7}, "normal has 7 pairs; need two per node"),
        ({"reduce": [["max_pool_3x3", 0]] * 6}, "normal has 8 pairs but reduce has 6"),
        ({"normal": [["sep_conv_3x3"]] * 8}, r"normal\[0\]: expected \[op, input\]"),
        ({"normal_concat": [2, 3, 9]}, "normal_concat: 9 is out of range"),
        ({"reduce_concat": [2, 2]}, "reduce_concat: repeated index"),
        ({"reduce_concat": []}, "reduce_concat must be a non-empty list"),
        ({"format": "darts"}, "format is 'darts', expected 'kdas-genotype'"),
        ({"version": 2}, "unsupported genotype version 2"),
        ({"primitives": ["none", "warp_9"]}, r"primitives\[1\]: 'warp_9' is not a known op"),
    ],
)
def test_validation_names_the_bad_entry(changes: dict, message: str) -> None:
    with pytest.raises(KdasError, match=message):
        load_genotype(_doc(**changes))


def test_missing_field_and_expected_steps() -> None:
    doc = _doc()
    del doc["reduce_concat"]
    with pytest.raises(KdasError, match="missing 'reduce_concat'"):
        load_genotype(doc)
    with pytest.raises(KdasError, match=r"8 pairs \(4 nodes\), expected 10 \(5 nodes\)"):
        load_genotype(_doc(), steps=5)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "kdas-genotype", ')
    with pytest.raises(KdasError, match=r"broken\.json is not valid JSON"):
        load_genotype(bad)
    with pytest.raises(KdasError, match=r"genotype file not found: .*missing\.json"):
        load_genotype(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(_doc(normal_concat=[7])))
    with pytest.raises(KdasError, match=r"genotype .*wrong\.json: normal_concat: 7"):
        load_genotype(wrong)


def test_darts_tuple_form(tmp_path: Path) -> None:
    g = _sample()
    assert g.normal[5] == ("skip_connect", 0) and g.reduce_concat == (2, 3, 4, 5)
    assert g.steps == 4
    text_file = tmp_path / "darts.txt"
    text_file.write_text("DARTS_V2 = " + DARTS_V2_TEXT + "\n")
    assert load_genotype(text_file) == g
    json_string = tmp_path / "darts.json"
    json_string.write_text(json.dumps(DARTS_V2_TEXT))
    assert load_genotype(json_string) == g
    positional = DARTS_V2_TEXT.replace("normal=", "").replace("normal_concat=", "")
    positional = positional.replace("reduce=", "").replace("reduce_concat=", "")
    assert load_genotype(positional) == g
    assert load_genotype("DARTS_V2 = " + DARTS_V2_TEXT) == g


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Genotype(normal=__import__('os').system('echo pwned'), normal_concat=[2], "
            "reduce=[], reduce_concat=[2])",
            "normal is not a literal",
        ),
        ("Genotype(normal=[], normal_concat=range(2, 6), reduce=[])", "missing 'reduce_concat'"),
        (
            "Genotype(normal=[], normal_concat=range(2, 6), reduce=[], reduce_concat=[2], x=1)",
            "unknown Genotype field 'x'",
        ),
        ("Genotype(normal=[('sep_conv_3x3', 0)", "not a Genotype"),
        (
            "Genotype(normal=[('sep_conv_3x3', 0), ('bad_op', 1)], normal_concat=range(2, 3), "
            "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
            r"normal\[1\]: 'bad_op' is not a known op",
        ),
    ],
)
def test_darts_tuple_form_errors(text: str, message: str) -> None:
    with pytest.raises(KdasError, match=message):
        load_genotype(text)
