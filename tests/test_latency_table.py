"""Latency tables: geometry against the real network, JSON round trip, fingerprint refusal,
budget parsing, and the prediction of a genotype against an independent sum."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from latency_tables import UNIT_COST, edge_cost, hand_table

from kdas.errors import KdasError
from kdas.models.genotype import Genotype
from kdas.models.latency_table import (
    TableMacro,
    check_fingerprint,
    load_latency_table,
    machine_fingerprint,
    parse_target,
)
from kdas.models.student import StudentNetwork

MACRO = TableMacro(C=4, layers=5, reduction_positions=(1, 3), steps=2, multiplier=2)
SIZE = (50, 26)  # odd sizes on the way down: 13x7 -> 7x4 -> 4x2
GENOTYPE = Genotype(
    normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("conv_3x3", 2), ("none", 0)),
    normal_concat=(2, 3),
    reduce=(("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("part_aware", 2), ("skip_connect", 1)),
    reduce_concat=(2, 3),
)
ARCH = {"C": 4, "layers": 5, "reduction_positions": (1, 3), "stem_multiplier": 3}


def _measured_edges(genotype: Genotype) -> float:
    """Σ edge_cost over every edge op of a real student, from the shapes its ops really see."""
    net = StudentNetwork(genotype, num_classes=5, arch=ARCH).eval()
    total = 0.0
    hooks = []
    for cell in net.backbone.cells:
        pairs = genotype.reduce if cell.reduction else genotype.normal
        for (op, _), module in zip(pairs, cell.ops, strict=True):

            def hook(mod, inputs, output, op=op):  # type: ignore[no-untyped-def]
                nonlocal total
                _, C, H, W = inputs[0].shape
                stride = 2 if output.shape[2] < H else 1
                total += 0.0 if op == "none" else edge_cost(op, C, H, W, stride, UNIT_COST)

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        net(torch.randn(1, 3, *SIZE))
    return total


def test_prediction_is_the_sum_over_the_real_network_plus_fixed_costs() -> None:
    table = hand_table(MACRO, SIZE)
    prediction = table.predict(GENOTYPE)
    fixed = 1.0 + 0.5 + 0.1 * 2 * MACRO.layers
    assert prediction.fixed_ms == pytest.approx(fixed)
    assert prediction.edges_ms == pytest.approx(_measured_edges(GENOTYPE), rel=1e-9)
    assert prediction.ms == pytest.approx(prediction.raw_ms)  # no correction fitted
    table.correction = dataclasses.replace(table.correction, a=0.5, b=2.0, networks=3)
    assert table.predict(GENOTYPE).ms == pytest.approx(0.5 * prediction.raw_ms + 2.0)


def test_places_follow_the_cell_stack_at_odd_sizes() -> None:
    net = StudentNetwork(GENOTYPE, num_classes=5, arch=ARCH).eval()
    seen: list[tuple[int, ...]] = []
    hooks = [
        cell.register_forward_hook(
            lambda m, i, o: seen.append((*i[0].shape[1:], *i[1].shape[1:], *o.shape[1:]))
        )
        for cell in net.backbone.cells
    ]
    with torch.no_grad():
        net(torch.randn(1, 3, *SIZE))
    for hook in hooks:
        hook.remove()
    for place, (c0, h0, w0, c1, h1, w1, *_) in zip(MACRO.places(SIZE), seen, strict=True):
        first, second = place.preprocess()
        assert (first["C_in"], first["H"], first["W"]) == (c0, h0, w0)
        assert (second["C_in"], second["H"], second["W"]) == (c1, h1, w1)
        assert first["kind"] == ("factorized_reduce" if place.reduction_prev else "relu_conv_bn")
    assert MACRO.output_shape(SIZE) == tuple(seen[-1][-3:])


def test_table_round_trip(tmp_path: Path) -> None:
    table = hand_table(MACRO, SIZE)
    table.correction.a, table.correction.networks = 0.8, 4
    path = table.save(tmp_path / "lut.json")
    loaded = load_latency_table(path)
    assert loaded.to_dict() == table.to_dict()
    assert loaded.path == path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "format is 'other'"),
        (lambda d: d.update(version=99), "unsupported latency table version 99"),
        (lambda d: d.pop("ops"), "missing 'ops'"),
        (lambda d: d["ops"].update({"conv_3x3|4|13x7|s1": -1}), "non-negative number"),
        (lambda d: d["fingerprint"].update(backend="abacus"), "fingerprint must name"),
        (lambda d: d.update(input_size=[5]), "input_size"),
    ],
)
def test_bad_tables_are_refused_in_one_line(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = hand_table(MACRO, SIZE).to_dict()
    edit(doc)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(KdasError, match=message):
        load_latency_table(path)
    path.write_text('{"format": ')
    with pytest.raises(KdasError, match="not readable JSON"):
        load_latency_table(path)
    with pytest.raises(KdasError, match="latency table not found"):
        load_latency_table(tmp_path / "missing.json")


def test_a_foreign_table_is_refused_unless_allowed() -> None:
    table = hand_table(MACRO, SIZE)
    assert check_fingerprint(table) == []
    table.fingerprint["device"] = "Imaginary CPU 9000"
    with pytest.raises(KdasError, match=r"measured elsewhere.*--allow-foreign-lut"):
        check_fingerprint(table)
    differences = check_fingerprint(table, allow_foreign=True)
    assert len(differences) == 1 and "Imaginary CPU 9000" in differences[0]
    table.fingerprint = machine_fingerprint("ort-fp32", 2, 1)
    table.fingerprint["backend_version"] = "0.0.1"
    with pytest.raises(KdasError, match="backend_version"):
        check_fingerprint(table)


def test_missing_ops_and_other_structures_are_named() -> None:
    table = hand_table(MACRO, SIZE, ops=("skip_connect", "sep_conv_3x3"))
    with pytest.raises(KdasError, match="no entries for max_pool_3x3"):
        table.check_ops(["none", "skip_connect", "max_pool_3x3"])
    with pytest.raises(KdasError, match="no entry for op 'conv_3x3' at C=4, 13x7"):
        table.predict(GENOTYPE)
    with pytest.raises(KdasError, match="layers = 5"):
        MACRO.check_matches(dataclasses.replace(MACRO, layers=8), "here")
    MACRO.check_matches(dataclasses.replace(MACRO, C=32), "here")  # width may differ


def test_budget_targets() -> None:
    table = hand_table(MACRO, SIZE, teacher_ms=12.0)
    assert parse_target("4.5") == 4.5
    assert parse_target(" 4.5ms ") == 4.5
    assert parse_target(3) == 3.0
    assert table.resolve_target("0.3x-teacher") == pytest.approx(3.6)
    for bad in ("fast", "-1", "0", "3 s", "x-teacher"):
        with pytest.raises(KdasError, match="latency target"):
            table.resolve_target(bad)
    with pytest.raises(KdasError, match="holds no teacher"):
        hand_table(MACRO, SIZE, teacher_ms=None).resolve_target("0.3x-teacher")
