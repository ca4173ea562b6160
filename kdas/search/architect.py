"""The architecture step: α follows the gradient of the objective on a D_val batch.

First order (default) treats the weights as constants. Second order (DARTS "unrolled") looks
one virtual weight step ahead, w' = w − ξ·(SGD update on a D_train batch), and differentiates
L_val(w'(α), α); the Hessian-vector product it needs is taken by central finite differences.
The same objective (distillation + triplet) drives both steps, as in Algorithm 1; a term of α
alone (the hardware-aware latency term) is added to the α gradient only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.func import functional_call

from kdas.engine.distributed import DistContext
from kdas.engine.precision import autocast
from kdas.losses.distillation import KDState
from kdas.losses.objective import LossOutput, ReIDObjective
from kdas.search.config import SearchOptimConfig


@dataclass
class Batch:
    images: torch.Tensor
    targets: torch.Tensor
    teacher_logits: torch.Tensor | None


def batch_loss(
    model: torch.nn.Module,
    batch: Batch,
    objective: ReIDObjective,
    kd: KDState,
    params: dict[str, torch.Tensor] | None = None,
    precision: str = "fp32",
) -> LossOutput:
    """The objective on one batch, optionally with substituted parameters (unrolled steps).

    Substituted runs get private copies of the BN buffers, so virtual steps never move the
    real running statistics.
    """
    with autocast(batch.images.device, precision):
        if params is None:
            logits, features = model(batch.images)
        else:
            buffers = {name: b.clone() for name, b in model.named_buffers()}
            logits, features = functional_call(model, {**params, **buffers}, (batch.images,))
    return objective(logits, features, batch.targets, batch.teacher_logits, kd)


class Architect:
    def __init__(
        self,
        model: torch.nn.Module,
        objective: ReIDObjective,
        cfg: SearchOptimConfig,
        ctx: DistContext | None = None,
        precision: str = "fp32",
        penalty: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
    ) -> None:
        """`penalty(alpha_normal, alpha_reduce)` is a term of α alone (the latency term): its
        gradient is added to the validation loss's, whatever the order."""
        self.model = model
        self.penalty = penalty
        self.last_penalty: Any = None
        self.objective = objective
        self.cfg = cfg
        self.ctx = ctx or DistContext()
        self.precision = precision
        self.alphas = list(model.arch_parameters())
        alpha_ids = {id(a) for a in self.alphas}
        self.weight_names = [
            n for n, p in model.named_parameters() if id(p) not in alpha_ids and p.requires_grad
        ]
        self.alpha_names = [n for n, p in model.named_parameters() if id(p) in alpha_ids]
        self.optimizer = torch.optim.Adam(
            self.alphas, lr=cfg.arch_lr, betas=cfg.arch_betas, weight_decay=cfg.arch_weight_decay
        )

    def step(
        self,
        val: Batch,
        train: Batch,
        kd: KDState,
        w_lr: float,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> LossOutput:
        """One Adam step on α only; returns the validation loss it followed."""
        if self.cfg.order == 2:
            grads, loss = self.unrolled_gradient(val, train, kd, w_lr, w_optimizer)
        else:
            loss = batch_loss(self.model, val, self.objective, kd, precision=self.precision)
            grads = list(torch.autograd.grad(loss.total, self.alphas))
        if self.ctx.distributed:
            for g in grads:
                dist.all_reduce(g)
                g /= self.ctx.world_size
        if self.penalty is not None:  # the same on every rank: added after the average
            self.last_penalty = self.penalty(*self.alphas)
            extra = torch.autograd.grad(self.last_penalty.total, self.alphas, allow_unused=True)
            grads = [g if e is None else g + e for g, e in zip(grads, extra, strict=True)]
        for alpha, grad in zip(self.alphas, grads, strict=True):
            alpha.grad = grad.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _virtual_weights(
        self,
        weight_grads: tuple[torch.Tensor | None, ...],
        w_lr: float,
        w_optimizer: torch.optim.Optimizer | None,
    ) -> dict[str, torch.Tensor]:
        """w' = w − ξ·(momentum·buf + ∇w L_train + wd·w): the SGD step the weights would take."""
        params = dict(self.model.named_parameters())
        virtual = {}
        for name, g in zip(self.weight_names, weight_grads, strict=True):
            w = params[name].detach()
            step = torch.zeros_like(w) if g is None else g.detach().clone()
            step += self.cfg.w_weight_decay * w
            if w_optimizer is not None:
                buffer = w_optimizer.state.get(params[name], {}).get("momentum_buffer")
                if buffer is not None:
                    step += self.cfg.w_momentum * buffer
            virtual[name] = (w - w_lr * step).requires_grad_(True)
        return virtual

    def _finite_difference_hvp(
        self, train: Batch, kd: KDState, v: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """[∇α L_train(w + εv) − ∇α L_train(w − εv)] / 2ε with ε = fd_scale / ‖v‖ (DARTS)."""
        params = dict(self.model.named_parameters())
        alphas = {n: params[n] for n in self.alpha_names}
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in v)).item()
        if norm == 0.0:
            return [torch.zeros_like(a) for a in self.alphas]
        eps = self.cfg.fd_scale / norm
        grads = []
        for sign in (1.0, -1.0):
            shifted = {
                n: params[n].detach() + sign * eps * g
                for n, g in zip(self.weight_names, v, strict=True)
            }
            loss = batch_loss(self.model, train, self.objective, kd, params={**shifted, **alphas})
            grads.append(torch.autograd.grad(loss.total, self.alphas))
        return [(p - m) / (2 * eps) for p, m in zip(grads[0], grads[1], strict=True)]

    def unrolled_gradient(
        self,
        val: Batch,
        train: Batch,
        kd: KDState,
        w_lr: float,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> tuple[list[torch.Tensor], LossOutput]:
        """∇α L_val(w', α) − ξ·∇²α,w L_train(w, α)·∇w' L_val(w', α)  (DARTS, eq. 7).

        The mixed second derivative is exact by default (double backward through the D_train
        loss). DARTS' central finite difference is the low-memory option; with batch-hard
        mining, ReLU and max-pool kinks its ε = 0.01/‖v‖ can be far off (tests show it).
        """
        exact = self.cfg.hessian == "exact"
        params = dict(self.model.named_parameters())
        weights = [params[n] for n in self.weight_names]
        train_loss = batch_loss(self.model, train, self.objective, kd, params=params)
        weight_grads = torch.autograd.grad(
            train_loss.total, weights, allow_unused=True, create_graph=exact
        )
        virtual = self._virtual_weights(weight_grads, w_lr, w_optimizer)
        alphas = {n: params[n] for n in self.alpha_names}
        val_loss = batch_loss(self.model, val, self.objective, kd, params={**virtual, **alphas})
        virtual_list = [virtual[n] for n in self.weight_names]
        grads = torch.autograd.grad(val_loss.total, self.alphas + virtual_list, allow_unused=True)
        n_alpha = len(self.alphas)
        alpha_grads = [
            torch.zeros_like(a) if g is None else g
            for a, g in zip(self.alphas, grads[:n_alpha], strict=True)
        ]
        v = [
            torch.zeros_like(w) if g is None else g.detach()
            for w, g in zip(virtual_list, grads[n_alpha:], strict=True)
        ]
        if exact:
            dot = sum((g * u).sum() for g, u in zip(weight_grads, v, strict=True) if g is not None)
            hvp = torch.autograd.grad(dot, self.alphas, allow_unused=True)
            hvp = [
                torch.zeros_like(a) if h is None else h
                for a, h in zip(self.alphas, hvp, strict=True)
            ]
        else:
            hvp = self._finite_difference_hvp(train, kd, v)
        return [g - w_lr * h for g, h in zip(alpha_grads, hvp, strict=True)], val_loss
