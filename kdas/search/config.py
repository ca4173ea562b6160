"""The typed config of a search run; saved in search/config.json and in genotype.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kdas.engine.config import DataConfig, LossConfig, RunConfig
from kdas.losses.distillation import KDSchedule
from kdas.models.spec import SupernetArch
from kdas.utils.config import bounded


@dataclass
class SupernetConfig(SupernetArch):
    """The searched network's structure (`SupernetArch`, flat in the JSON); the ops it chooses
    among are `SearchConfig.ops`."""


@dataclass
class LatencyConfig:
    """The hardware-aware term (`kdas.search.latency`): off unless a table and a target are set.

    `target` is milliseconds ("4.5", "4.5ms") or a share of the teacher's latency on the same
    backend, which the table holds ("0.3x-teacher"). The term is `weight` · relu(log(E[lat] /
    target)).
    """

    table: str = ""  # a latency table JSON (`kdas latency profile`)
    target: str = ""
    weight: float = bounded(1.0, ge=0)
    allow_foreign: bool = False  # accept a table whose fingerprint is another machine's
    # derive a cell that meets the target (greedy op swaps, `kdas.search.budget`) when one exists
    enforce: bool = True


@dataclass
class SearchOptimConfig:
    """Paper 4.2.1: SGD 0.1 -> 0.001 cosine (momentum 0.9, wd 5e-4) for w; Adam 0.02 for α."""

    w_lr: float = bounded(0.1, gt=0)
    w_lr_min: float = bounded(0.001, ge=0)
    w_momentum: float = bounded(0.9, ge=0, lt=1)
    w_weight_decay: float = bounded(5e-4, ge=0)
    grad_clip: float = bounded(5.0, gt=0)
    arch_lr: float = bounded(0.02, gt=0)
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = bounded(5e-4, ge=0)
    order: Literal[1, 2] = 1  # 2: DARTS unrolled (second-order) architecture gradient
    hessian: Literal["exact", "finite_difference"] = "exact"  # order 2: how ∇²α,w is taken
    fd_scale: float = bounded(
        0.01, gt=0
    )  # finite difference step: ε = fd_scale / ‖∇w' L_val‖ (DARTS)
    arch_start_epoch: int = bounded(0, ge=0)  # epochs of weight-only warm-up before α moves


@dataclass
class SearchConfig:
    teacher: str = ""  # teacher artifact folder ("" with loss.kd = "none")
    # paper 4.2: flip + pad-and-crop only, no random erasing
    data: DataConfig = field(default_factory=lambda: DataConfig(p=8, k=2, random_erasing=0.0))
    model: SupernetConfig = field(default_factory=SupernetConfig)
    # the primitive set: a named set (kdas.models.ops.PRIMITIVE_SETS) or a list of op names
    ops: str | tuple[str, ...] = "auto-reid"
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    optim: SearchOptimConfig = field(default_factory=SearchOptimConfig)
    loss: LossConfig = field(default_factory=lambda: LossConfig(kd=KDSchedule("dynamic")))
    run: RunConfig = field(default_factory=lambda: RunConfig(epochs=200, eval_every=0))
    split_seed: int = 0
    max_skip_normal: int | None = None  # cap on skip connections in the normal cell
    # DARTS+ early stopping: end the search at the first epoch whose α-argmax normal cell holds
    # this many skip connections (None: run every epoch)
    early_stop_skips: int | None = None
