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


AUTO_WARMUP_SHARE = 0.1  # of the run's epochs
AUTO_WARMUP_MAX = 10  # the paper's (and BoT's) warm-up: 10 of 200 (or 120) epochs
AUTO_MILESTONE_SHARES = (40 / 120, 70 / 120)  # BoT's 40 and 70 of 120 epochs


def warmup_epochs(cfg: OptimConfig, epochs: int) -> int:
    """The warm-up this run gets: the configured number, or (None) 10 % of the run, at most
    10 epochs, so a 6-epoch run does not spend itself on the ramp of a 200-epoch recipe."""
    if cfg.warmup_epochs is None:
        wanted = min(AUTO_WARMUP_MAX, int(AUTO_WARMUP_SHARE * epochs))
    else:
        wanted = cfg.warmup_epochs
    return max(0, min(wanted, epochs - 1))


def milestones(cfg: OptimConfig, epochs: int) -> tuple[int, ...]:
    """The multi-step decay epochs: the configured ones, or (None) BoT's scaled to the run."""
    if cfg.milestones is not None:
        return tuple(cfg.milestones)
    return tuple(max(1, round(share * epochs)) for share in AUTO_MILESTONE_SHARES)


def schedule_notes(cfg: OptimConfig, epochs: int) -> list[str]:
    """Warnings about a schedule that cannot fit the run (said once, before training)."""
    notes = []
    warmup = warmup_epochs(cfg, epochs)
    if cfg.warmup_epochs is not None and epochs > 1 and warmup >= epochs / 2:
        notes.append(
            f"optim.warmup_epochs = {cfg.warmup_epochs} of a {epochs}-epoch run: the learning "
            "rate spends half the run or more on its ramp; unset it (auto: 10 % of the epochs)"
        )
    if (
        cfg.schedule == "multistep"
        and milestones(cfg, epochs)
        and min(milestones(cfg, epochs)) >= epochs
    ):
        notes.append(
            f"optim.milestones {list(milestones(cfg, epochs))} all lie past the run's {epochs} "
            "epochs: the learning rate never decays; unset them (auto: scaled to the run)"
        )
    return notes


def lr_factor_fn(cfg: OptimConfig, epochs: int) -> Callable[[int], float]:
    """Multiplier of the base lr at each epoch: linear warm-up from `warmup_factor`, then the
    chosen decay over the remaining epochs."""
    warmup = warmup_epochs(cfg, epochs)
    steps = milestones(cfg, epochs)
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * epoch / warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(epoch >= m for m in steps)
        span = max(1, epochs - warmup - 1)
        progress = min(1.0, (epoch - warmup) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch; its state travels in every checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, epochs))
