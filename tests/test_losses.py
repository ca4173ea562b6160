"""Losses against direct formulas written out here."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kdas.losses import (
    KDSchedule,
    LossConfig,
    ReIDObjective,
    batch_hard_triplet_loss,
    distillation_loss,
    label_smoothed_cross_entropy,
)
from kdas.losses.distillation import KDState, soft_target_kl


def _manual_ce(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> float:
    total = 0.0
    n, c = logits.shape
    for i in range(n):
        logp = logits[i] - torch.logsumexp(logits[i], 0)
        q = torch.full((c,), eps / c)
        q[targets[i]] += 1 - eps
        total += float(-(q * logp).sum())
    return total / n


def test_label_smoothed_ce_matches_manual() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g)
    targets = torch.tensor([0, 1, 4, 2, 2, 3])
    for eps in (0.0, 0.1, 0.3):
        got = float(label_smoothed_cross_entropy(logits, targets, eps))
        assert got == pytest.approx(_manual_ce(logits, targets, eps), rel=1e-5)


def _manual_triplet(features: torch.Tensor, targets: torch.Tensor, margin: float) -> float:
    losses = []
    n = len(targets)
    for a in range(n):
        pos = [
            float(torch.dist(features[a], features[p]))
            for p in range(n)
            if p != a and targets[p] == targets[a]
        ]
        neg = [
            float(torch.dist(features[a], features[q]))
            for q in range(n)
            if targets[q] != targets[a]
        ]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(losses) / len(losses)


def test_batch_hard_triplet_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    features = torch.randn(12, 8, generator=g)
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    got = float(batch_hard_triplet_loss(features, targets, margin=0.3))
    assert got == pytest.approx(_manual_triplet(features, targets, 0.3), rel=1e-5)


def test_triplet_skips_anchors_without_positive_and_is_finite() -> None:
    features = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([0, 0, 1, 2])  # ids 1 and 2 have no positive
    loss = batch_hard_triplet_loss(features, targets, margin=0.3)
    expected = _manual_triplet(features.detach(), targets, 0.3)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(features.grad).all()
    lonely = batch_hard_triplet_loss(torch.randn(3, 3), torch.tensor([0, 1, 2]), 0.3)
    assert float(lonely) == 0.0


def _manual_kl(zt: torch.Tensor, zs: torch.Tensor, T: float) -> float:
    pt = torch.softmax(zt / T, 1)
    ps = torch.softmax(zs / T, 1)
    return float((pt * (pt.log() - ps.log())).sum(1).mean())


def test_distillation_weight_one_is_t_squared_kl() -> None:
    g = torch.Generator().manual_seed(2)
    zs, zt = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4])
    for T in (1.0, 2.0, 4.0):
        state = KDState(temperature=T, weight=1.0, kd_temperature=T)
        got = float(distillation_loss(zs, zt, y, state, label_smoothing=0.1))
        assert got == pytest.approx(T * T * _manual_kl(zt, zs, T), rel=1e-5)


def test_distillation_at_zero_temperature_is_label_ce() -> None:
    schedule = KDSchedule("dynamic")
    state = schedule.at(190, 200)
    assert state.temperature == 0.0 and state.weight == 0.0
    zs, zt = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([1, 0, 5, 2])
    got = float(distillation_loss(zs, zt, y, state, label_smoothing=0.0))
    assert got == pytest.approx(_manual_ce(zs, y, 0.0), rel=1e-5)
    # teacher logits are not needed once the teacher's weight is zero
    assert float(distillation_loss(zs, None, y, state, label_smoothing=0.0)) == pytest.approx(got)


def test_distillation_mixes_by_weight() -> None:
    zs, zt = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([1, 0, 5, 2])
    state = KDState(temperature=1.0, weight=0.25, kd_temperature=1.5)
    expected = 0.25 * 1.5**2 * _manual_kl(zt, zs, 1.5) + 0.75 * _manual_ce(zs, y, 0.1)
    assert float(distillation_loss(zs, zt, y, state, 0.1)) == pytest.approx(expected, rel=1e-5)


def test_tiny_temperature_gives_finite_gradients() -> None:
    zs = torch.randn(3, 5, requires_grad=True)
    zt = torch.randn(3, 5)
    loss = soft_target_kl(zs, zt, temperature=1e-4)
    loss.backward()
    assert torch.isfinite(loss.detach()) and torch.isfinite(zs.grad).all()


def test_distillation_rejects_teacher_of_other_classes() -> None:
    state = KDState(2.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="same identities"):
        distillation_loss(torch.randn(2, 5), torch.randn(2, 6), torch.tensor([0, 1]), state, 0.1)


def test_dynamic_schedule_values() -> None:
    s = KDSchedule("dynamic", t0=2.0, t_floor=1.0, decay_fraction=0.95)
    assert s.at(0, 200) == KDState(2.0, 1.0, 2.0)
    mid = s.at(95, 200)
    assert mid.temperature == pytest.approx(1.0) and mid.weight == pytest.approx(0.5)
    assert mid.kd_temperature == pytest.approx(1.0)
    late = s.at(150, 200)
    assert late.temperature == pytest.approx(2.0 * (1 - 150 / 190))
    assert late.kd_temperature == 1.0  # the softmax never runs colder than T_floor
    assert s.at(199, 200).weight == 0.0
    # epoch-based: a 20-epoch run decays over 19 epochs
    short = KDSchedule("dynamic")
    assert short.at(19, 20).weight == 0.0 and short.at(9, 20).temperature == pytest.approx(
        2 * (1 - 9 / 19)
    )
    temps = [s.at(e, 200).temperature for e in range(200)]
    assert all(a >= b for a, b in itertools.pairwise(temps))


def test_constant_and_none_modes() -> None:
    assert KDSchedule("constant").at(9, 10) == KDState(2.0, 1.0, 2.0)
    none = KDSchedule("none").at(0, 10)
    assert none.weight == 0.0


def test_objective_sums_named_terms() -> None:
    objective = ReIDObjective(
        LossConfig(kd=KDSchedule("constant"), lambda_kd=0.5, lambda_triplet=2.0), 5
    )
    logits, teacher = torch.randn(8, 4), torch.randn(8, 4)
    features = torch.randn(8, 6)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = objective(logits, features, y, teacher, objective.state(0))
    assert set(out.terms) == {"kd", "triplet"}
    expected = 0.5 * float(out.terms["kd"]) + 2.0 * float(out.terms["triplet"])
    assert float(out.total) == pytest.approx(expected, rel=1e-6)
    assert out.scalars()["total"] == pytest.approx(expected, rel=1e-6)
    assert not math.isnan(out.scalars()["kd"])
