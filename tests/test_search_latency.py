"""The latency term: E[lat] against finite differences and against the table's prediction of
the derived genotype, the hinge, the config checks, and a search that it steers to cheaper ops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from latency_tables import hand_table, search_table
from tiny_configs import search_config

from kdas.errors import KdasError
from kdas.models.derive import derive_genotype
from kdas.models.genotype import edge_list
from kdas.models.latency_table import TableMacro
from kdas.search.config import LatencyConfig
from kdas.search.latency import ExpectedLatency, LatencyTerm, build_latency_term
from kdas.search.loop import run_search

PRIMITIVES = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "part_aware")
MACRO = TableMacro(C=8, layers=4, reduction_positions=(1, 3), steps=3, multiplier=3)
SIZE = (64, 32)


def _table():  # type: ignore[no-untyped-def]
    return hand_table(MACRO, SIZE, ops=PRIMITIVES)


def test_expected_latency_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    expected = ExpectedLatency(_table(), PRIMITIVES, MACRO.steps).double()
    expected.normal_ms = expected.normal_ms.double()
    expected.reduce_ms = expected.reduce_ms.double()
    shape = (len(edge_list(MACRO.steps)), len(PRIMITIVES))
    alphas = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    grads = torch.autograd.grad(expected(*alphas), alphas)
    eps = 1e-6
    for which in range(2):
        for e, k in [(0, 3), (2, 0), (4, 5), (8, 1)]:
            shifted = [a.detach().clone() for a in alphas]
            shifted[which][e, k] += eps
            up = expected(*shifted)
            shifted[which][e, k] -= 2 * eps
            down = expected(*shifted)
            numeric = float((up - down) / (2 * eps))
            assert grads[which][e, k].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_peaked_alphas_give_the_derived_genotypes_latency() -> None:
    """With every kept edge certain of its op and every dropped edge certain of `none`, the
    expectation is exactly the table's sum for the genotype derivation picks."""
    table = _table()
    rows = len(edge_list(MACRO.steps))
    torch.manual_seed(1)
    alphas = []
    for _ in range(2):
        alpha = torch.full((rows, len(PRIMITIVES)), -30.0)
        start = 0
        for node in range(MACRO.steps):
            kept = torch.randperm(2 + node)[:2]
            for j in range(2 + node):
                op = int(torch.randint(1, len(PRIMITIVES), ())) if j in kept else 0
                alpha[start + j, op] = 30.0
            start += 2 + node
        alphas.append(alpha)
    genotype = derive_genotype(*alphas, PRIMITIVES, steps=MACRO.steps, multiplier=MACRO.multiplier)
    expected = ExpectedLatency(table, PRIMITIVES, MACRO.steps)
    assert float(expected(*alphas)) == pytest.approx(table.predict(genotype).raw_ms, rel=1e-4)


def test_the_hinge_is_zero_under_budget_and_log_above() -> None:
    table = _table()
    alphas = [torch.zeros(len(edge_list(MACRO.steps)), len(PRIMITIVES)) for _ in range(2)]
    expected = float(ExpectedLatency(table, PRIMITIVES, MACRO.steps)(*alphas))
    under = LatencyTerm(table, PRIMITIVES, MACRO.steps, target_ms=2 * expected, weight=3.0)
    assert float(under(*alphas).total) == 0.0
    over = LatencyTerm(table, PRIMITIVES, MACRO.steps, target_ms=expected / 2, weight=3.0)
    out = over(*alphas)
    assert out.expected_ms == pytest.approx(expected)
    assert float(out.total) == pytest.approx(3.0 * torch.log(torch.tensor(2.0)).item(), rel=1e-5)


def test_latency_config_is_checked_before_anything_runs(tmp_path: Path) -> None:
    cfg = search_config(tmp_path, tmp_path)
    arch = dataclasses.replace(
        cfg.model, layers=4, reduction_positions=(1, 3), steps=3, multiplier=3
    )
    cfg.latency = LatencyConfig(table=str(_table().save(tmp_path / "lut.json")))
    with pytest.raises(KdasError, match="add --latency-target"):
        build_latency_term(cfg, PRIMITIVES, arch)
    cfg.latency.target = "0.5x-teacher"
    term = build_latency_term(cfg, PRIMITIVES, arch)
    assert term is not None and term.target_ms == pytest.approx(5.0)
    with pytest.raises(KdasError, match="layers = 4"):
        build_latency_term(cfg, PRIMITIVES, cfg.model)
    cfg.latency = LatencyConfig()
    assert build_latency_term(cfg, PRIMITIVES, arch) is None


def test_a_budget_below_the_fixed_costs_is_named(tmp_path: Path, capsys) -> None:
    cfg = search_config(tmp_path, tmp_path)
    arch = dataclasses.replace(
        cfg.model, layers=4, reduction_positions=(1, 3), steps=3, multiplier=3
    )
    path = str(_table().save(tmp_path / "lut.json"))  # fixed: 1 + 0.5 + 8 x 0.1 = 2.3 ms
    cfg.latency = LatencyConfig(table=path, target="0.3x-teacher")  # 3 ms: reachable
    build_latency_term(cfg, PRIMITIVES, arch)
    assert "no cell can meet it" not in capsys.readouterr().err
    cfg.latency.target = "0.2x-teacher"  # 2 ms
    assert build_latency_term(cfg, PRIMITIVES, arch) is not None  # a warning, not an error
    printed = " ".join(capsys.readouterr().err.split())
    assert "2.00 ms is below the 2.30 ms" in printed and "--layers" in printed


def test_a_heavy_latency_term_derives_cheaper_cells(
    tiny_market: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    ops = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3")
    cfg = search_config(tiny_market, tiny_teacher, epochs=3)
    cfg.data.batches_per_epoch = 4
    cfg.ops = ops
    table = search_table(cfg, ops)
    path = table.save(tmp_path / "lut.json")
    plain = run_search(cfg, tmp_path / "plain")
    # the soft term alone (the budget repair, tested in test_search_budget.py, is off)
    cfg.latency = LatencyConfig(table=str(path), target="0.01", weight=50.0, enforce=False)
    steered = run_search(cfg, tmp_path / "steered")
    assert table.predict(steered.genotype).ms < table.predict(plain.genotype).ms
    last = steered.history[-1]["latency"]
    assert last["predicted_ms"] == pytest.approx(table.predict(steered.genotype).ms)
    assert last["target_ms"] == 0.01 and last["expected_ms"] > 0
    assert (tmp_path / "steered" / "latency.png").is_file()
    assert not (tmp_path / "plain" / "latency.png").exists()
