"""Teacher and student training as an `EpochJob` of the one epoch runner: P×K batches, the
named-term objective, optional distillation from an eval-mode teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from kdas.data.records import ReIDSplits
from kdas.data.validation import validation_view
from kdas.engine.config import DataConfig, OptimConfig
from kdas.engine.distributed import DistContext, barrier, unwrap
from kdas.engine.evaluate import evaluate_model
from kdas.engine.feature_kd import FeatureAdapter, teacher_targets
from kdas.engine.optim import (
    build_optimizer,
    build_scheduler,
    schedule_notes,
    warmup_epochs,
)
from kdas.engine.precision import autocast, make_grad_scaler
from kdas.engine.runner import EpochJob, EpochRunner, StepOutput
from kdas.engine.sanity import chance_warning
from kdas.errors import KdasError
from kdas.files import BEST_WEIGHTS
from kdas.losses.objective import ReIDObjective
from kdas.models.artifacts import save_weights
from kdas.models.teacher import read_state_dict
from kdas.progress import console


@dataclass
class TrainResult:
    metrics: dict[str, Any] | None  # the test split, evaluated once, on the written weights
    selected: dict[str, Any]  # which epoch's weights were written, why, and their validation
    epochs: int
    wall_time_s: float
    warnings: list[str] = field(default_factory=list)


def check_identities(splits: ReIDSplits, data: DataConfig) -> None:
    """A P×K batch needs p training identities; say so before the validation split is blamed
    for nothing, or silently for too much."""
    ids = splits.num_train_pids
    if ids >= data.p or not splits.has_validation:
        return
    held = len({r.pid for r in (*splits.val_query, *splits.val_gallery)})
    raise KdasError(
        f"P x K batches need p={data.p} training identities, but {ids} are left after holding "
        f"out {held} for validation (data.val_fraction = {data.val_fraction}); lower data.p or "
        "data.val_fraction (0 turns the validation split off)"
    )


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
    check_identities(splits, data)
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


def optimisation_state(job: Any) -> dict[str, Any]:
    """The checkpoint entries every job with a model, an optimizer, a per-epoch scheduler and
    an optional GradScaler shares (`job.model`, `.optimizer`, `.scheduler`, `.scaler`)."""
    return {
        "model": unwrap(job.model).state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict(),
        "scaler": job.scaler.state_dict() if job.scaler is not None else None,
    }


def restore_optimisation_state(job: Any, state: dict[str, Any]) -> None:
    """The inverse of `optimisation_state`."""
    job.model.load_state_dict(state["model"])
    job.optimizer.load_state_dict(state["optimizer"])
    job.scheduler.load_state_dict(state["scheduler"])
    if job.scaler is not None and state.get("scaler"):
        job.scaler.load_state_dict(state["scaler"])


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
        self.adapter: torch.nn.Module | None = None
        params = list(model.parameters())
        if objective.uses_feature_maps:
            if teacher is None:
                raise KdasError("loss.lambda_feature > 0 distils feature maps: it needs a teacher")
            self.adapter = FeatureAdapter(model.embedding_dim, teacher.embedding_dim)
            self.adapter_net = runner.place(self.adapter)
            params += list(self.adapter.parameters())
        self.parameters = params
        self.optimizer = build_optimizer(params, optim)
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
        if self.adapter is not None:
            self.adapter.train()
        return self.loader

    def step(self, batch: Any, epoch: int) -> StepOutput:
        images, pids, _camids, _idx = batch
        images = self.runner.to_device(images)
        pids = pids.to(self.runner.device, non_blocking=True)
        if self.adapter is None:
            targets = teacher_logits(self.teacher, images, self.kd.weight, self.run.precision)
            with autocast(self.runner.device, self.run.precision):
                logits, features = self.net(images)
            out = self.objective(logits, features, pids, targets, self.kd)
        else:
            targets, teacher_map = teacher_targets(
                self.teacher, images, self.kd.weight > 0, self.run.precision
            )
            with autocast(self.runner.device, self.run.precision):
                logits, features, feature_map = self.net(images, with_map=True)
                adapted = self.adapter_net(feature_map)
            out = self.objective(logits, features, pids, targets, self.kd, (adapted, teacher_map))
        backward_and_step(
            out.total, self.optimizer, self.scaler, self.parameters, self.optim.grad_clip
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

    def evaluate(self, epoch: int) -> dict[str, Any] | None:
        """The validation split's metrics (None without one: the test split is evaluated once,
        after training, on the weights that are written)."""
        if not self.splits.has_validation:
            return None
        metrics = evaluate_split(self.model, validation_view(self.splits), self.data, self.runner)
        self.last_metrics = {**metrics, "epoch": epoch}
        if self.best is None or metrics["mAP"] > self.best["mAP"]:
            self.best = {**metrics, "epoch": epoch}
            if self.runner.ctx.is_main and self.run.keep == "best-val":
                save_weights(unwrap(self.model), self.runner.out_dir / BEST_WEIGHTS)
        return metrics

    def summary(self, record: dict[str, Any]) -> str:
        text = f"loss {record.get('loss_total', 0):.4f}"
        if "eval" in record:
            text += f" | val rank-1 {record['eval']['rank1']:.3f} mAP {record['eval']['mAP']:.3f}"
        return text

    def state_dict(self) -> dict[str, Any]:
        state = {**optimisation_state(self), "best": self.best}
        if self.adapter is not None:
            state["adapter"] = self.adapter.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_optimisation_state(self, state)
        if self.adapter is not None:
            self.adapter.load_state_dict(state["adapter"])
        self.best = state.get("best")


def evaluate_split(
    model: torch.nn.Module, splits: ReIDSplits, data: DataConfig, runner: EpochRunner
) -> dict[str, Any]:
    run = runner.run_config
    return evaluate_model(
        model,
        splits,
        tuple(data.size),
        ctx=runner.ctx,
        batch_size=run.eval_batch_size,
        flip=run.eval_flip,
        precision=run.precision,
        progress=run.progress,
    )


def _select_weights(job: TrainJob) -> dict[str, Any]:
    """Put the weights to write into the model: the last epoch's, or the best validation
    epoch's (`run.keep = "best-val"`), and say which."""
    runner, epochs = job.runner, job.run.epochs
    if job.splits.has_validation and job.last_metrics is None:  # a finished run resumed
        job.evaluate(epochs - 1)
    if job.run.keep == "best-val" and job.best is not None:
        barrier(runner.ctx)
        path = runner.out_dir / BEST_WEIGHTS
        unwrap(job.model).load_state_dict(read_state_dict(path))
        val = {k: v for k, v in job.best.items() if k != "epoch"}
        return {"epoch": job.best["epoch"], "by": "best validation mAP", "val": val}
    val = None
    if job.last_metrics is not None:
        val = {k: v for k, v in job.last_metrics.items() if k != "epoch"}
    return {"epoch": epochs - 1, "by": "last epoch", "val": val}


def check_keep(run_keep: str, splits: ReIDSplits) -> None:
    if run_keep == "best-val" and not splits.has_validation:
        raise KdasError(
            "run.keep = 'best-val' chooses an epoch on the validation split, but there is none: "
            "set data.val_fraction > 0 (e.g. 0.1) or run.keep = 'last'"
        )


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
    what: str = "training",
) -> TrainResult:
    """Train `model` in place; rank 0 writes the log and checkpoints in the runner's folder.
    Epoch choices use the validation split; the test split is evaluated once, at the end."""
    if objective.needs_teacher and teacher is None:
        raise KdasError(
            f"loss.kd.mode = {objective.mode!r} with loss.lambda_feature = "
            f"{objective.config.lambda_feature:g} needs a teacher (--teacher DIR)"
        )
    check_keep(runner.run_config.keep, splits)
    epochs = runner.run_config.epochs
    notes = schedule_notes(optim, epochs)
    if runner.ctx.is_main:
        for note in notes:
            console.print(f"[yellow]warning:[/] {note}")
    job = TrainJob(model, splits, objective, data, optim, runner, teacher)
    summary = runner.fit(job, resume, resume_key)
    if job.drop_path_max:
        model.drop_path_prob = job.drop_path_max
    selected = _select_weights(job)
    metrics = evaluate_split(model, splits, data, runner)
    recipe = (
        f"{epochs} epochs, warm-up {warmup_epochs(optim, epochs)}, "
        f"{optim.optimizer} lr {optim.lr:g}, {optim.schedule}"
    )
    warning = chance_warning(metrics, splits.gallery, what, recipe)
    warnings = [*notes, *([warning] if warning else [])]
    if warning and runner.ctx.is_main:
        console.print(f"[bold yellow]{warning}[/]")
    return TrainResult(metrics, selected, summary.epochs, summary.wall_time_s, warnings)
