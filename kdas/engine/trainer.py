"""Teacher and student training as an `EpochJob` of the one epoch runner: P×K batches, the
named-term objective, optional distillation from an eval-mode teacher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from kdas.data.records import ReIDSplits
from kdas.engine.config import DataConfig, OptimConfig
from kdas.engine.distributed import DistContext, unwrap
from kdas.engine.evaluate import evaluate_model
from kdas.engine.optim import build_optimizer, build_scheduler
from kdas.engine.precision import autocast, make_grad_scaler
from kdas.engine.runner import EpochJob, EpochRunner, StepOutput
from kdas.errors import KdasError
from kdas.files import BEST_WEIGHTS
from kdas.losses.objective import ReIDObjective
from kdas.models.artifacts import save_weights


@dataclass
class TrainResult:
    metrics: dict[str, Any] | None  # the last evaluation
    best: dict[str, Any] | None  # the best evaluation by mAP, with its epoch
    epochs: int
    wall_time_s: float


def build_train_loader(
    splits: ReIDSplits, data: DataConfig, seed: int, ctx: DistContext
) -> tuple[DataLoader, Any]:
    from kdas.data.dataset import ReIDImageDataset
    from kdas.data.samplers import PKSampler
    from kdas.data.transforms import build_train_transform

    transform = build_train_transform(
        tuple(data.size),
        flip_prob=data.flip_prob,
        pad=data.pad,
        random_erasing_prob=data.random_erasing,
    )
    dataset = ReIDImageDataset(splits.train, transform, skip_corrupt=data.skip_corrupt)
    sampler = PKSampler(
        [r.pid for r in dataset.records],
        p=data.p,
        k=data.k,
        seed=seed,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        batches_per_epoch=data.batches_per_epoch,
        item_seeds=True,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=False,
    )
    return loader, sampler


def backward_and_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    parameters: Any,
    grad_clip: float | None,
) -> None:
    """Backward, optional clipping, step; with a GradScaler (CUDA fp16) the gradients are
    unscaled before clipping so the clip threshold means the same in every precision."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def teacher_logits(
    teacher: torch.nn.Module | None, images: torch.Tensor, weight: float, precision: str
) -> torch.Tensor | None:
    """The frozen teacher's logits for distillation; None when this epoch does not distil."""
    if teacher is None or weight <= 0:
        return None
    with torch.no_grad(), autocast(images.device, precision):
        return teacher.classify(images).float()


class TrainJob(EpochJob):
    """One model trained with `objective` on the training split (teacher or student)."""

    def __init__(
        self,
        model: torch.nn.Module,
        splits: ReIDSplits,
        objective: ReIDObjective,
        data: DataConfig,
        optim: OptimConfig,
        runner: EpochRunner,
        teacher: torch.nn.Module | None,
    ) -> None:
        run = runner.run_config
        self.model, self.splits, self.objective, self.data, self.optim = (
            model, splits, objective, data, optim,
        )  # fmt: skip
        self.runner, self.run = runner, run
        self.net = runner.place(model)
        self.teacher = runner.place_frozen(teacher) if teacher is not None else None
        self.loader, self.sampler = build_train_loader(splits, data, run.seed, runner.ctx)
        self.optimizer = build_optimizer(model.parameters(), optim)
        self.scheduler = build_scheduler(self.optimizer, optim, run.epochs)
        self.scaler = make_grad_scaler(runner.device, run.precision)
        self.drop_path_max = float(getattr(model, "drop_path_prob", 0.0) or 0.0)
        self.best: dict[str, Any] | None = None
        self.last_metrics: dict[str, Any] | None = None
        self.kd = objective.state(0)

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int) -> Any:
        self.kd = self.objective.state(epoch)
        if self.drop_path_max:
            self.model.drop_path_prob = self.drop_path_max * epoch / self.run.epochs
        self.sampler.set_epoch(epoch)
        self.net.train()
        return self.loader

    def step(self, batch: Any, epoch: int) -> StepOutput:
        images, pids, _camids, _idx = batch
        images = self.runner.to_device(images)
        pids = pids.to(self.runner.device, non_blocking=True)
        targets = teacher_logits(self.teacher, images, self.kd.weight, self.run.precision)
        with autocast(self.runner.device, self.run.precision):
            logits, features = self.net(images)
        out = self.objective(logits, features, pids, targets, self.kd)
        backward_and_step(
            out.total, self.optimizer, self.scaler, self.model.parameters(), self.optim.grad_clip
        )
        return StepOutput(out.scalars(), len(images))

    def status(self) -> str:
        return f"lr {self.optimizer.param_groups[0]['lr']:.2e} "

    def end_epoch(self, epoch: int, means: dict[str, float]) -> dict[str, Any]:
        record = {
            "lr": self.optimizer.param_groups[0]["lr"],
            "temperature": self.kd.temperature,
            "kd_weight": self.kd.weight,
            "kd_temperature": self.kd.kd_temperature,
            **{f"loss_{k}": v for k, v in means.items()},
        }
        self.scheduler.step()
        return record

    def evaluate(self, epoch: int) -> dict[str, Any]:
        run = self.run
        metrics = evaluate_model(
            self.model,
            self.splits,
            tuple(self.data.size),
            ctx=self.runner.ctx,
            batch_size=run.eval_batch_size,
            flip=run.eval_flip,
            precision=run.precision,
            progress=run.progress,
        )
        self.last_metrics = metrics
        if self.best is None or metrics["mAP"] > self.best["mAP"]:
            self.best = {**metrics, "epoch": epoch}
            if self.runner.ctx.is_main:
                save_weights(unwrap(self.model), self.runner.out_dir / BEST_WEIGHTS)
        return metrics

    def summary(self, record: dict[str, Any]) -> str:
        text = f"loss {record.get('loss_total', 0):.4f}"
        if "eval" in record:
            text += f" | rank-1 {record['eval']['rank1']:.3f} mAP {record['eval']['mAP']:.3f}"
        return text

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best": self.best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best = state.get("best")


def fit(
    model: torch.nn.Module,
    splits: ReIDSplits,
    objective: ReIDObjective,
    data: DataConfig,
    optim: OptimConfig,
    runner: EpochRunner,
    teacher: torch.nn.Module | None = None,
    resume: bool = False,
    resume_key: str = "",
) -> TrainResult:
    """Train `model` in place; rank 0 writes the log and checkpoints in the runner's folder."""
    if objective.needs_teacher and teacher is None:
        raise KdasError(f"loss.kd.mode = {objective.mode!r} needs a teacher (--teacher DIR)")
    job = TrainJob(model, splits, objective, data, optim, runner, teacher)
    summary = runner.fit(job, resume, resume_key)
    if job.drop_path_max:
        model.drop_path_prob = job.drop_path_max
    metrics = job.last_metrics
    if metrics is None and runner.ctx.is_main and summary.start_epoch >= summary.epochs:
        metrics = job.best  # a finished run resumed: nothing new was evaluated
    return TrainResult(metrics, job.best, summary.epochs, summary.wall_time_s)
