"""The budget repair of the derived cell (`kdas.search.budget`): it meets a reachable target and
stops there, keeps the topology, respects the skip cap, and names an unreachable target; the
search writes the repaired cell and logs the argmax cell's latency beside it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from latency_tables import hand_table, search_table
from tiny_configs import search_config

from kdas.files import GENOTYPE_FILE
from kdas.models.derive import derive_genotype
from kdas.models.genotype import load_genotype
from kdas.models.latency_table import TableMacro
from kdas.search.budget import _with_op, fit_to_budget
from kdas.search.config import LatencyConfig
from kdas.search.loop import run_search

PRIMITIVES = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "conv_3x3")
MACRO = TableMacro(C=8, layers=4, reduction_positions=(1, 3), steps=3, multiplier=3)
SIZE = (64, 32)
EDGES = 9  # 2 + 3 + 4 rows of α for 3 nodes


def _weights(seed: int) -> dict[str, np.ndarray]:
    """α softmax that prefers the expensive convs, as an accuracy-driven search might."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 0.3, size=(2, EDGES, len(PRIMITIVES)))
    logits[:, :, PRIMITIVES.index("conv_3x3")] += 1.0
    weights = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return {"normal": weights[0], "reduce": weights[1]}


def _argmax(weights: dict[str, np.ndarray], max_skips: int | None = 1):  # type: ignore[no-untyped-def]
    return derive_genotype(
        np.log(weights["normal"]), np.log(weights["reduce"]), PRIMITIVES, steps=3,
        max_skip_normal=max_skips,
    )  # fmt: skip


def _replay(genotype, swaps):  # type: ignore[no-untyped-def]
    """The genotypes the recorded swaps pass through, from the argmax cell."""
    states = [genotype]
    for swap in swaps:
        cell, position = swap["cell"], swap["position"]
        assert getattr(states[-1], cell)[position][0] == swap["from"]
        states.append(_with_op(states[-1], cell, position, swap["to"]))
    return states


def test_a_target_the_argmax_cell_meets_changes_nothing() -> None:
    table, weights = hand_table(MACRO, SIZE, ops=PRIMITIVES), _weights(0)
    genotype = _argmax(weights)
    ms = table.predict(genotype).ms
    fit = fit_to_budget(genotype, weights, PRIMITIVES, table, ms + 0.01, max_skip_normal=1)
    assert fit.genotype == genotype and fit.met and fit.swaps == []
    assert fit.predicted_ms == fit.argmax_ms == pytest.approx(ms)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_reachable_target_is_met_and_the_repair_stops_there(seed: int) -> None:
    table, weights = hand_table(MACRO, SIZE, ops=PRIMITIVES), _weights(seed)
    genotype = _argmax(weights)
    argmax_ms = table.predict(genotype).ms
    target = 0.6 * argmax_ms
    fit = fit_to_budget(genotype, weights, PRIMITIVES, table, target, max_skip_normal=1)
    assert fit.met and fit.predicted_ms <= target < argmax_ms
    states = _replay(genotype, fit.swaps)
    assert states[-1] == fit.genotype
    times = [table.predict(g).ms for g in states]
    assert all(b < a for a, b in itertools.pairwise(times))  # every swap saves time
    assert times[-2] > target  # it stopped at the first cell under the target
    for cell in ("normal", "reduce"):  # same inputs, never `none`
        ours, theirs = getattr(fit.genotype, cell), getattr(genotype, cell)
        assert [j for _, j in ours] == [j for _, j in theirs]
        assert all(op != "none" for op, _ in ours)
    assert sum(op == "skip_connect" for op, _ in fit.genotype.normal) <= 1


def test_an_unreachable_target_keeps_the_argmax_cell_and_names_the_cheapest() -> None:
    """Out of reach, the accuracy-chosen cell is kept; the cheapest cell the repair found is
    reported, and no single swap improves on it (checked exhaustively)."""
    table, weights = hand_table(MACRO, SIZE, ops=PRIMITIVES), _weights(3)
    genotype = _argmax(weights)
    fit = fit_to_budget(genotype, weights, PRIMITIVES, table, 1e-3, max_skip_normal=1)
    assert not fit.met and fit.genotype == genotype and fit.swaps == []
    assert fit.predicted_ms == fit.argmax_ms == table.predict(genotype).ms
    assert fit.cheapest is not None and fit.cheapest_ms is not None
    best = table.predict(fit.cheapest).ms
    assert best == pytest.approx(fit.cheapest_ms) and best < fit.argmax_ms
    for cell in ("normal", "reduce"):
        for position in range(len(getattr(fit.cheapest, cell))):
            for op in PRIMITIVES[1:]:
                trial = _with_op(fit.cheapest, cell, position, op)
                skips = sum(o == "skip_connect" for o, _ in trial.normal)
                if cell == "normal" and skips > 1:
                    continue
                assert table.predict(trial).ms >= best - 1e-9


def test_the_search_writes_the_repaired_cell(
    tiny_market: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    ops = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3")
    cfg = search_config(tiny_market, tiny_teacher, epochs=1)
    cfg.data.batches_per_epoch = 2
    cfg.ops, cfg.max_skip_normal = ops, 1
    table = search_table(cfg, ops)
    path = table.save(tmp_path / "lut.json")
    # all sep_conv cells cost 3.44 ms, all max_pool cells 1.96; the soft term is off (λ = 0)
    cfg.latency = LatencyConfig(table=str(path), target="2.5", weight=0.0)
    result = run_search(cfg, tmp_path / "search")
    written = load_genotype(tmp_path / "search" / GENOTYPE_FILE)
    assert written == result.genotype
    assert table.predict(written).ms <= 2.5
    record = json.loads((tmp_path / "search" / "alphas.jsonl").read_text().splitlines()[-1])
    latency = record["latency"]
    assert latency["met"] is True and latency["predicted_ms"] <= 2.5
    assert latency["argmax_ms"] > 2.5 and latency["swaps"] > 0  # the repair did the work
    assert latency["argmax_ms"] == pytest.approx(table.predict(_argmax_of(record, ops)).ms)


def _argmax_of(record: dict, ops: tuple[str, ...]):  # type: ignore[no-untyped-def]
    alphas = record["alphas"]
    return derive_genotype(
        np.log(np.asarray(alphas["normal"])), np.log(np.asarray(alphas["reduce"])), ops,
        steps=2, max_skip_normal=1, multiplier=2,
    )  # fmt: skip
