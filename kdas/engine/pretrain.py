"""`kdas pretrain`: the static student trained as an image classifier (paper 4.4).

The student of a genotype learns label-smoothed cross entropy on an ImageNet-layout folder
(`kdas.data.imagefolder`), through the one epoch loop (`EpochRunner`), so the run is resumable,
guarded, DDP-ready and logged like every other stage. The result is a model artifact folder
(config.json, model.safetensors, metrics.json, log.jsonl, checkpoints/) that `kdas train --init`
starts the Re-ID retraining from (`kdas.models.pretrained.load_init_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from kdas.constants import DEFAULT_INPUT_SIZE
from kdas.data.imagefolder import ImageFolderSplits
from kdas.engine.config import OptimConfig, RunConfig
from kdas.engine.distributed import all_reduce_mean, barrier, unwrap
from kdas.engine.optim import build_optimizer, build_scheduler, schedule_notes
from kdas.engine.precision import autocast, make_grad_scaler
from kdas.engine.runner import EpochJob, EpochRunner, StepOutput
from kdas.engine.trainer import (
    backward_and_step,
    optimisation_state,
    restore_optimisation_state,
)
from kdas.errors import KdasError
from kdas.files import GENOTYPE_FILE, METRICS_FILE, TRAIN_LOG
from kdas.losses.cross_entropy import label_smoothed_cross_entropy
from kdas.models.artifacts import save_model_artifact
from kdas.models.builder import build_model
from kdas.models.spec import ModelSpec, StudentArch
from kdas.progress import console
from kdas.utils.atomic import atomic_write_json
from kdas.utils.config import check_bounds, config_hash, to_dict

STAGE = "pretrain"  # config.json's `stage`
TOP_K = 5
CHANCE_MULTIPLE = 2.0  # a validation top-1 within this factor of chance is "not learned"


@dataclass
class ImageFolderConfig:
    """Where the classified images are and how they are batched (`kdas.data.imagefolder`)."""

    root: str = ""  # ROOT/train/<class>/* [+ ROOT/val/<class>/*], or ROOT/<class>/*
    # the Re-ID input (height, width), so the pre-trained net is the one retraining uses
    size: tuple[int, int] = DEFAULT_INPUT_SIZE
    batch_size: int = 128  # per process (DARTS' ImageNet batch)
    batches_per_epoch: int | None = None  # None: one pass over the training images
    num_workers: int = 8  # ImageNet JPEG decoding needs several workers to keep a GPU busy
    flip_prob: float = 0.5
    crop_scale: tuple[float, float] = (0.25, 1.0)  # random-resized-crop area range
    skip_corrupt: bool = False  # decode every image first and drop unreadable ones


@dataclass
class PretrainConfig:
    genotype: str = ""  # path to genotype.json
    data: ImageFolderConfig = field(default_factory=ImageFolderConfig)
    model: StudentArch = field(default_factory=StudentArch)
    # DARTS' ImageNet recipe for its mobile-size cells: SGD momentum 0.9, lr 0.1 for batch 128,
    # weight decay 3e-5 (small networks underfit, so they are barely regularised), label
    # smoothing 0.1. Adam at the Re-ID lr (3.5e-4) trains classifiers of 1000 classes slowly.
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(optimizer="sgd", lr=0.1, weight_decay=3e-5)
    )
    label_smoothing: float = 0.1
    run: RunConfig = field(default_factory=lambda: RunConfig(epochs=250, eval_every=10))


@dataclass
class PretrainResult:
    metrics: dict[str, Any] | None  # top-1 / top-5 on val/ of the written weights (None: no val/)
    num_classes: int
    epochs: int
    wall_time_s: float
    warnings: list[str] = field(default_factory=list)


def _check_config(cfg: PretrainConfig) -> None:
    if not cfg.genotype:
        raise KdasError("no genotype given: pass --genotype runs/NAME/search/genotype.json")
    if not cfg.data.root:
        raise KdasError("no image folder given: pass --data ROOT (ROOT/train/<class>/*.jpg)")
    if cfg.data.batch_size < 2:
        raise KdasError(f"data.batch_size must be >= 2 (BatchNorm), got {cfg.data.batch_size}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise KdasError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0.0 <= cfg.model.drop_path_prob < 1.0:
        raise KdasError(f"drop_path_prob must be in [0, 1), got {cfg.model.drop_path_prob}")
    if cfg.run.keep != "last":
        raise KdasError("kdas pretrain writes the last epoch's weights: set run.keep = 'last'")


def top_k_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[int, int]:
    """How many rows have their label first, and among their k highest logits."""
    k = min(k, logits.shape[1])
    best = logits.topk(k, dim=1).indices
    hits = best == labels[:, None]
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum())


class PretrainJob(EpochJob):
    """The student as a classifier of the folder's classes, one optimiser step per batch."""

    label = "pretrain"

    def __init__(
        self,
        model: torch.nn.Module,
        splits: ImageFolderSplits,
        cfg: PretrainConfig,
        runner: EpochRunner,
    ) -> None:
        from kdas.data.imagefolder import (
            ClassImageDataset,
            ShuffledBatchSampler,
            build_classification_train_transform,
        )

        self.model, self.splits, self.cfg, self.runner = model, splits, cfg, runner
        self.run, self.optim, ctx = cfg.run, cfg.optim, runner.ctx
        self.net = runner.place(model)
        transform = build_classification_train_transform(
            tuple(cfg.data.size), tuple(cfg.data.crop_scale), cfg.data.flip_prob
        )
        dataset = ClassImageDataset(splits.train, transform, skip_corrupt=cfg.data.skip_corrupt)
        self.sampler = ShuffledBatchSampler(
            len(dataset),
            cfg.data.batch_size,
            seed=self.run.seed,
            batches_per_epoch=cfg.data.batches_per_epoch,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
        )
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=cfg.data.num_workers,
            pin_memory=ctx.device.type == "cuda",
        )
        self.optimizer = build_optimizer(model.parameters(), self.optim)
        self.scheduler = build_scheduler(self.optimizer, self.optim, self.run.epochs)
        self.scaler = make_grad_scaler(runner.device, self.run.precision)
        self.drop_path_max = float(getattr(model, "drop_path_prob", 0.0) or 0.0)
        self.last_metrics: dict[str, Any] | None = None

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int) -> Any:
        if self.drop_path_max:
            self.model.drop_path_prob = self.drop_path_max * epoch / self.run.epochs
        self.sampler.set_epoch(epoch)
        self.net.train()
        return self.loader

    def step(self, batch: Any, epoch: int) -> StepOutput:
        images, labels = batch
        images = self.runner.to_device(images)
        labels = labels.to(self.runner.device, non_blocking=True)
        with autocast(self.runner.device, self.run.precision):
            logits, _features = self.net(images)
        loss = label_smoothed_cross_entropy(logits, labels, self.cfg.label_smoothing)
        backward_and_step(
            loss, self.optimizer, self.scaler, self.model.parameters(), self.optim.grad_clip
        )
        top1 = (logits.detach().argmax(dim=1) == labels).float().mean()
        return StepOutput({"total": float(loss.detach()), "top1": float(top1)}, len(images))

    def status(self) -> str:
        return f"lr {self.optimizer.param_groups[0]['lr']:.2e} "

    def end_epoch(self, epoch: int, means: dict[str, float]) -> dict[str, Any]:
        record = {
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss_total": means.get("total", 0.0),
            "train_top1": means.get("top1", 0.0),
        }
        self.scheduler.step()
        return record

    def evaluate(self, epoch: int) -> dict[str, Any] | None:
        if not self.splits.has_validation:
            return None
        self.last_metrics = evaluate_accuracy(self.model, self.splits, self.cfg, self.runner)
        return self.last_metrics

    def summary(self, record: dict[str, Any]) -> str:
        text = f"loss {record.get('loss_total', 0):.4f} train top-1 {record['train_top1']:.3f}"
        if "eval" in record:
            text += f" | val top-1 {record['eval']['top1']:.3f} top-5 {record['eval']['top5']:.3f}"
        return text

    def state_dict(self) -> dict[str, Any]:
        return optimisation_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_optimisation_state(self, state)


@torch.no_grad()
def evaluate_accuracy(
    model: torch.nn.Module, splits: ImageFolderSplits, cfg: PretrainConfig, runner: EpochRunner
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy on val/ (each rank takes every world_size-th image), resized
    as evaluation always is (`kdas.data.transforms.build_eval_transform`)."""
    from kdas.data.imagefolder import ClassImageDataset
    from kdas.data.transforms import build_eval_transform

    ctx, run = runner.ctx, cfg.run
    shard = splits.val[ctx.rank :: ctx.world_size]
    dataset = ClassImageDataset(shard, build_eval_transform(tuple(cfg.data.size)))
    loader = DataLoader(
        dataset,
        batch_size=run.eval_batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    net = unwrap(model)
    was_training = net.training
    net.eval()
    top1 = top5 = seen = 0
    for images, labels in loader:
        with autocast(runner.device, run.precision):
            logits = net.classify(runner.to_device(images)).float()
        first, within = top_k_correct(logits.cpu(), labels, TOP_K)
        top1, top5, seen = top1 + first, top5 + within, seen + len(labels)
    net.train(was_training)
    # means over ranks of the counts: their ratios are the whole job's
    sums = all_reduce_mean(ctx, {"top1": top1, "top5": top5, "seen": seen})
    images = round(sums["seen"] * ctx.world_size)
    return {
        "top1": sums["top1"] / max(sums["seen"], 1e-12),
        f"top{TOP_K}": sums["top5"] / max(sums["seen"], 1e-12),
        "images": images,
    }


def chance_warning(metrics: dict[str, Any] | None, num_classes: int) -> str | None:
    if not metrics or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if metrics["top1"] > CHANCE_MULTIPLE * chance:
        return None
    return (
        f"warning: the pre-trained student ended at val top-1 {metrics['top1']:.3f}, within "
        f"{CHANCE_MULTIPLE:g}x of chance (1/{num_classes}): it has not learned; train longer, "
        "check optim.lr for the optimizer and batch size, or check the class folders"
    )


def _resume_key(cfg: PretrainConfig) -> str:
    """What must not change between a checkpoint and its resumption (run.epochs may)."""
    return config_hash({k: v for k, v in to_dict(cfg).items() if k != "run"})


def _facts(model: torch.nn.Module, size: tuple[int, int], wall_time_s: float) -> dict[str, Any]:
    from kdas.models.facts import count_flops, count_parameters

    facts = {"parameters": count_parameters(model), "flops": count_flops(model, tuple(size))}
    facts["train_wall_time_s"] = wall_time_s
    return facts


def pretrain(
    cfg: PretrainConfig, out_dir: str | Path, resume: bool = False, force: bool = False
) -> PretrainResult:
    """Pre-train the static student of `cfg.genotype` as a classifier of `cfg.data.root`'s
    classes; writes the artifact folder `out_dir` (its last epoch's weights)."""
    from kdas.data.imagefolder import scan_image_folder
    from kdas.models.genotype import genotype_to_dict, load_genotype

    out_dir = Path(out_dir)
    check_bounds(cfg)
    _check_config(cfg)
    genotype = genotype_to_dict(load_genotype(cfg.genotype))
    splits = scan_image_folder(cfg.data.root)  # before --force may clear anything
    runner = EpochRunner.open(cfg.run, out_dir, TRAIN_LOG, resume, force)
    spec = ModelSpec(
        kind="student",
        num_classes=splits.num_classes,
        input_size=tuple(cfg.data.size),
        student=cfg.model,
        genotype=genotype,
    )
    model = build_model(spec)
    notes = schedule_notes(cfg.optim, cfg.run.epochs)
    ctx = runner.ctx
    if ctx.is_main:
        for note in notes:
            console.print(f"[yellow]warning:[/] {note}")
    job = PretrainJob(model, splits, cfg, runner)
    summary = runner.fit(job, resume, _resume_key(cfg))
    if job.drop_path_max:
        model.drop_path_prob = job.drop_path_max
    if splits.has_validation and job.last_metrics is None:  # a finished run resumed
        job.evaluate(cfg.run.epochs - 1)
    warning = chance_warning(job.last_metrics, splits.num_classes)
    warnings = [*notes, *([warning] if warning else [])]
    if ctx.is_main:
        if warning:
            console.print(f"[bold yellow]{warning}[/]")
        metrics = {
            "val": job.last_metrics,  # the written (last epoch's) weights on val/
            "classes": splits.num_classes,
            "train_images": len(splits.train),
            "val_images": len(splits.val),
            "epochs": summary.epochs,
            "warnings": warnings,
        }
        atomic_write_json(out_dir / METRICS_FILE, metrics)
        atomic_write_json(out_dir / GENOTYPE_FILE, genotype)
        model.cpu()
        facts = _facts(model, spec.input_size, summary.wall_time_s)
        extra = {"classes": list(splits.classes)}
        save_model_artifact(out_dir, model, spec, STAGE, cfg, facts=facts, extra=extra)
        console.log(f"{STAGE} written to {out_dir}")
    barrier(ctx)
    return PretrainResult(
        job.last_metrics, splits.num_classes, summary.epochs, summary.wall_time_s, warnings
    )
