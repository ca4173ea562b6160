"""The genotype type and its JSON: edge order, round trip, validation messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from genotypes import DARTS_V2_TEXT

from kdas.errors import KdasError
from kdas.models.genotype import (
    Genotype,
    edge_list,
    genotype_to_dict,
    load_genotype,
    num_edges,
    save_genotype,
)
from kdas.models.ops import PRIMITIVES


def test_edge_order() -> None:
    assert num_edges(4) == 14 and num_edges(2) == 5
    assert edge_list(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]


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
