"""Optimizers and per-epoch learning-rate schedules (warm-up, then cosine or multi-step)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from kdas.engine.config import OptimConfig


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimConfig
) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor_fn(cfg: OptimConfig, epochs: int) -> Callable[[int], float]:
    """Multiplier of the base lr at each epoch: linear warm-up from `warmup_factor`, then the
    chosen decay over the remaining epochs."""
    warmup = max(0, min(cfg.warmup_epochs, epochs - 1))
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * epoch / warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        span = max(1, epochs - warmup - 1)
        progress = min(1.0, (epoch - warmup) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch; its state travels in every checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, epochs))
