"""The bi-level steps: which parameters each step moves, and the second-order α-gradient."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from kdas.losses import KDSchedule, LossConfig, ReIDObjective
from kdas.models.spec import SupernetArch
from kdas.models.supernet import Supernet
from kdas.search.architect import Architect, Batch
from kdas.search.config import SearchOptimConfig
from kdas.search.loop import weight_step


def _tiny_supernet(dtype: torch.dtype = torch.float32) -> Supernet:
    torch.manual_seed(0)
    # two cells (normal, reduction) of two nodes: every α is used, and it runs in milliseconds
    net = Supernet(3, SupernetArch(C=4, layers=2, reduction_positions=(1,), steps=2, multiplier=2))
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_(std=0.5)  # away from uniform, so the gradient is not symmetric
    return net.to(dtype)


def _batch(seed: int, dtype: torch.dtype = torch.float32) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 32, 16, generator=g, dtype=dtype)
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    teacher = torch.randn(6, 3, generator=g, dtype=dtype)
    return Batch(images, targets, teacher)


def _snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _changed(before: list[torch.Tensor], params: list[torch.nn.Parameter]) -> bool:
    return any(not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True))


@pytest.mark.parametrize("order", [1, 2])
def test_architecture_step_moves_only_alpha(order: int) -> None:
    net = _tiny_supernet()
    objective = ReIDObjective(LossConfig(kd=KDSchedule("constant")), 2)
    architect = Architect(net, objective, SearchOptimConfig(order=order))
    weights, alphas = list(net.weight_parameters()), list(net.arch_parameters())
    w0, a0 = _snapshot(weights), _snapshot(alphas)
    architect.step(_batch(1), _batch(2), objective.state(0), w_lr=0.1)
    assert _changed(a0, alphas)
    assert not _changed(w0, weights)


def test_weight_step_moves_only_weights() -> None:
    net = _tiny_supernet()
    objective = ReIDObjective(LossConfig(kd=KDSchedule("dynamic")), 2)
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    weights, alphas = list(net.weight_parameters()), list(net.arch_parameters())
    w0, a0 = _snapshot(weights), _snapshot(alphas)
    weight_step(net, _batch(3), objective, objective.state(0), optimizer, grad_clip=5.0)
    assert _changed(w0, weights)
    assert not _changed(a0, alphas)
    assert all(a.grad is None for a in alphas)


@pytest.mark.parametrize(("hessian", "fd_scale"), [("exact", 0.01), ("finite_difference", 1e-6)])
def test_second_order_gradient_matches_finite_differences(hessian: str, fd_scale: float) -> None:
    """d/dα L_val(w − ξ(∇w L_train(w, α) + λw), α), by central differences on α."""
    net = _tiny_supernet(torch.float64)
    objective = ReIDObjective(LossConfig(kd=KDSchedule("constant")), 2)
    kd = objective.state(0)
    cfg = SearchOptimConfig(order=2, w_weight_decay=5e-4, hessian=hessian, fd_scale=fd_scale)
    architect = Architect(net, objective, cfg)
    val, train = _batch(4, torch.float64), _batch(5, torch.float64)
    xi = 0.05
    grads, _ = architect.unrolled_gradient(val, train, kd, w_lr=xi)

    names = dict(net.named_parameters())
    alpha_names = ["alpha_normal", "alpha_reduce"]
    weight_names = [n for n in names if n not in alpha_names and names[n].requires_grad]
    buffers = {n: b.clone() for n, b in net.named_buffers()}

    def loss_at(params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        out = functional_call(
            net, {**params, **{n: b.clone() for n, b in buffers.items()}}, (batch.images,)
        )
        return objective(out[0], out[1], batch.targets, batch.teacher_logits, kd).total

    def unrolled_loss(alphas: dict[str, torch.Tensor]) -> float:
        weights = {n: names[n].detach().clone().requires_grad_(True) for n in weight_names}
        train_loss = loss_at({**weights, **alphas}, train)
        g = torch.autograd.grad(train_loss, list(weights.values()), allow_unused=True)
        stepped = {
            n: w.detach() - xi * ((0 if gw is None else gw) + cfg.w_weight_decay * w.detach())
            for (n, w), gw in zip(weights.items(), g, strict=True)
        }
        with torch.no_grad():
            return float(loss_at({**stepped, **alphas}, val))

    base = {n: names[n].detach().clone() for n in alpha_names}

    def numeric(cell: str, i: int, j: int, h: float) -> float:
        plus = {n: a.clone() for n, a in base.items()}
        minus = {n: a.clone() for n, a in base.items()}
        plus[cell][i, j] += h
        minus[cell][i, j] -= h
        return (unrolled_loss(plus) - unrolled_loss(minus)) / (2 * h)

    # ReLU, max-pool and hard mining make ∇w L_train jump where an activation changes side, so
    # the unrolled loss is only piecewise smooth: an entry is checked where two step sizes agree
    # (no kink nearby); every cell must get at least three checked entries.
    rng = torch.Generator().manual_seed(0)
    for cell, grad in zip(alpha_names, grads, strict=True):
        rows, cols = base[cell].shape
        checked = 0
        for _ in range(12):
            i = int(torch.randint(rows, (1,), generator=rng))
            j = int(torch.randint(cols, (1,), generator=rng))
            coarse, fine = numeric(cell, i, j, 1e-6), numeric(cell, i, j, 1e-7)
            if abs(coarse - fine) > 1e-4 * max(1.0, abs(fine)):
                continue
            assert float(grad[i, j]) == pytest.approx(fine, rel=2e-3, abs=1e-6), (cell, i, j)
            checked += 1
            if checked == 3:
                break
        assert checked == 3, f"{cell}: too few smooth entries to check"
