"""The one training loop of kdas (teacher and student): P×K batches, the named-term objective,
optional distillation from an eval-mode teacher, per-epoch checkpoints that resume exactly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from kdas.data.records import ReIDSplits
from kdas.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    rank_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from kdas.engine.config import DataConfig, OptimConfig, RunConfig
from kdas.engine.distributed import DistContext, all_reduce_mean, gather_objects, unwrap
from kdas.engine.evaluate import evaluate_model
from kdas.engine.logs import JsonlLog, console, make_progress
from kdas.engine.optim import build_optimizer, build_scheduler
from kdas.engine.precision import autocast, check_precision, make_grad_scaler
from kdas.errors import KdasError
from kdas.losses.objective import ReIDObjective
from kdas.models.artifacts import save_weights

LAST_CHECKPOINT = "checkpoints/last.pt"
BEST_WEIGHTS = "checkpoints/best.safetensors"


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


def _wants_eval(epoch: int, epochs: int, every: int) -> bool:
    last = epoch == epochs - 1
    return last or (every > 0 and (epoch + 1) % every == 0)


def fit(
    model: torch.nn.Module,
    splits: ReIDSplits,
    objective: ReIDObjective,
    data: DataConfig,
    optim: OptimConfig,
    run: RunConfig,
    out_dir: str | Path,
    ctx: DistContext,
    teacher: torch.nn.Module | None = None,
    resume: bool = False,
    resume_key: str = "",
) -> TrainResult:
    """Train `model` in place. Rank 0 writes `log.jsonl` and `checkpoints/` under `out_dir`."""
    out_dir = Path(out_dir)
    device = ctx.device
    check_precision(run.precision, device)
    if objective.needs_teacher and teacher is None:
        raise KdasError(f"loss.kd = {objective.schedule.mode!r} needs a teacher (--teacher DIR)")
    channels_last = run.channels_last if run.channels_last is not None else device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    model.to(device, memory_format=memory_format)
    if teacher is not None:
        teacher.to(device, memory_format=memory_format).eval()
        teacher.requires_grad_(False)
    net = model
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loader, sampler = build_train_loader(splits, data, run.seed, ctx)
    optimizer = build_optimizer(model.parameters(), optim)
    scheduler = build_scheduler(optimizer, optim, run.epochs)
    scaler = make_grad_scaler(device, run.precision)
    drop_path_max = float(getattr(model, "drop_path_prob", 0.0) or 0.0)

    log = JsonlLog(out_dir / "log.jsonl")
    start_epoch, best = 0, None
    checkpoint_path = out_dir / LAST_CHECKPOINT
    if resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path, map_location=device)
        if state.get("resume_key", "") != resume_key:
            raise KdasError(
                f"{checkpoint_path} was made with a different data/model/optimiser/loss config; "
                "resume with the same config, or pass --force to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, best = int(state["epoch"]), state.get("best")
        restore_rng_state(rank_rng_state(state["rng"], ctx.rank))
        if ctx.is_main:
            log.keep_until(start_epoch)
            console.log(f"resumed from {checkpoint_path} at epoch {start_epoch}")
    elif ctx.is_main and log.path.exists():
        log.path.unlink()

    metrics: dict[str, Any] | None = None
    started = time.perf_counter()
    with make_progress(run.progress and ctx.is_main) as progress:
        for epoch in range(start_epoch, run.epochs):
            kd = objective.state(epoch)
            if drop_path_max:
                model.drop_path_prob = drop_path_max * epoch / run.epochs
            sampler.set_epoch(epoch)
            net.train()
            task = progress.add_task(
                f"epoch {epoch + 1}/{run.epochs}", total=len(loader), status=""
            )
            sums: dict[str, float] = {}
            images_seen, t0 = 0, time.perf_counter()
            for step, (images, pids, _camids, _idx) in enumerate(loader, start=1):
                images = images.to(device, non_blocking=True, memory_format=memory_format)
                pids = pids.to(device, non_blocking=True)
                teacher_logits = None
                if teacher is not None and kd.weight > 0:
                    with torch.no_grad(), autocast(device, run.precision):
                        teacher_logits = teacher.classify(images)
                with autocast(device, run.precision):
                    logits, features = net(images)
                out = objective(logits, features, pids, teacher_logits, kd)
                backward_and_step(out.total, optimizer, scaler, model.parameters(), optim.grad_clip)
                for name, value in out.scalars().items():
                    sums[name] = sums.get(name, 0.0) + value
                images_seen += len(images)
                rate = images_seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
                lr = optimizer.param_groups[0]["lr"]
                status = f"loss {sums['total'] / step:.3f} lr {lr:.2e} {rate:.0f} img/s"
                progress.update(task, advance=1, status=status)
            progress.remove_task(task)
            epoch_time = time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "temperature": kd.temperature,
                "kd_weight": kd.weight,
                "kd_temperature": kd.kd_temperature,
                **all_reduce_mean(
                    ctx, {f"loss_{k}": v / max(len(loader), 1) for k, v in sums.items()}
                ),
                "images_per_s": images_seen * ctx.world_size / max(epoch_time, 1e-9),
                "epoch_time_s": epoch_time,
            }
            scheduler.step()
            if _wants_eval(epoch, run.epochs, run.eval_every):
                metrics = evaluate_model(
                    model,
                    splits,
                    tuple(data.size),
                    ctx=ctx,
                    batch_size=run.eval_batch_size,
                    flip=run.eval_flip,
                    precision=run.precision,
                    progress=run.progress,
                )
                record["eval"] = metrics
                if best is None or metrics["mAP"] > best["mAP"]:
                    best = {**metrics, "epoch": epoch}
                    if ctx.is_main:
                        save_weights(unwrap(model), out_dir / BEST_WEIGHTS)
            rng_states = gather_objects(ctx, capture_rng_state())  # every rank's, for resume
            if ctx.is_main:
                log.append(record)
                save_checkpoint(
                    checkpoint_path,
                    {
                        "epoch": epoch + 1,
                        "model": unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "rng": rng_states,
                        "best": best,
                        "resume_key": resume_key,
                    },
                )
                summary = f"epoch {epoch + 1}/{run.epochs} loss {record.get('loss_total', 0):.4f}"
                if "eval" in record:
                    summary += f" | rank-1 {metrics['rank1']:.3f} mAP {metrics['mAP']:.3f}"
                if run.progress:
                    console.log(
                        summary + f" ({epoch_time:.1f}s, {record['images_per_s']:.0f} img/s)"
                    )
    if drop_path_max:
        model.drop_path_prob = drop_path_max
    if metrics is None and ctx.is_main and start_epoch >= run.epochs:
        metrics = best
    return TrainResult(metrics, best, run.epochs, time.perf_counter() - started)
