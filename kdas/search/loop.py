"""Algorithm 1 of KDAS-ReID: alternate weight steps on D_train and α steps on D_val, with the
distillation temperature updated per epoch and the genotype derived after every epoch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdas.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    rank_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from kdas.engine.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    gather_objects,
    unwrap,
)
from kdas.engine.logs import JsonlLog, console, make_progress
from kdas.engine.precision import autocast, check_precision
from kdas.engine.stages import begin_stage, build_objective, load_distillation_teacher
from kdas.errors import KdasError
from kdas.search.architect import Architect, Batch, batch_loss
from kdas.search.config import SearchConfig
from kdas.utils.atomic import atomic_write_json
from kdas.utils.config import config_hash, to_dict

LAST_CHECKPOINT = "checkpoints/last.pt"
ALPHAS_LOG = "alphas.jsonl"
GENOTYPE_FILE = "genotype.json"


@dataclass
class SearchResult:
    genotype: Any  # kdas.models.genotype.Genotype
    history: list[dict[str, Any]]
    out_dir: Path
    wall_time_s: float


def weight_step(
    net: torch.nn.Module,
    batch: Batch,
    objective: Any,
    kd: Any,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
    precision: str = "fp32",
) -> Any:
    """One SGD step on the supernet weights (α is not in `optimizer` and its gradient is
    dropped), with the gradient norm clipped as in DARTS."""
    model = unwrap(net)
    net.train()
    loss = batch_loss(net, batch, objective, kd, precision=precision)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    torch.nn.utils.clip_grad_norm_(model.weight_parameters(), grad_clip)
    optimizer.step()
    for alpha in model.arch_parameters():
        alpha.grad = None
    return loss


def _streams(cfg: SearchConfig, splits: Any, ctx: DistContext) -> tuple[Any, Any, int]:
    """Persistent P×K batch streams over the two halves of the 50/50 search split."""
    from kdas.data.dataset import ReIDImageDataset
    from kdas.data.samplers import BatchStream, PKSampler, search_split
    from kdas.data.transforms import build_train_transform

    data = cfg.data
    train_half, val_half = search_split(splits.train, seed=cfg.split_seed)
    transform = build_train_transform(
        tuple(data.size),
        flip_prob=data.flip_prob,
        pad=data.pad,
        random_erasing_prob=data.random_erasing,
    )
    streams = []
    for offset, records in enumerate((train_half, val_half)):
        dataset = ReIDImageDataset(records, transform, skip_corrupt=data.skip_corrupt)
        sampler = PKSampler(
            [r.pid for r in dataset.records],
            p=data.p,
            k=data.k,
            seed=cfg.run.seed + offset,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            batches_per_epoch=data.batches_per_epoch,
            item_seeds=True,
        )
        streams.append((BatchStream(dataset, sampler, num_workers=data.num_workers), len(sampler)))
    return streams[0][0], streams[1][0], streams[0][1]


def _teacher_logits(
    teacher: torch.nn.Module | None, images: torch.Tensor, weight: float, precision: str
) -> torch.Tensor | None:
    if teacher is None or weight <= 0:
        return None
    with torch.no_grad(), autocast(images.device, precision):
        return teacher.classify(images).float()


def _alphas_record(model: Any, max_skip_normal: int | None) -> dict[str, Any]:
    from kdas.models.genotype import count_skips, genotype_to_dict

    genotype = model.genotype(max_skip_normal=max_skip_normal)
    alphas = model.alphas_softmax()
    return {
        "alphas": {"normal": alphas["normal"].tolist(), "reduce": alphas["reduce"].tolist()},
        "genotype": genotype_to_dict(genotype, primitives=model.primitives),
        "skip_count": {
            "normal": count_skips(genotype, "normal"),
            "reduce": count_skips(genotype, "reduce"),
        },
    }


def run_search(
    cfg: SearchConfig, out_dir: str | Path, resume: bool = False, force: bool = False
) -> SearchResult:
    """Search a cell; writes genotype.json, alphas.jsonl, pictures and checkpoints/."""
    from kdas.models.genotype import save_genotype
    from kdas.models.supernet import Supernet

    out_dir = Path(out_dir)
    if cfg.run.precision == "fp16":
        raise KdasError(
            "the search has no fp16 loss scaling for its two optimisers: use bf16 (or fp32)"
        )
    if cfg.optim.order == 2 and cfg.run.precision != "fp32":
        raise KdasError("second-order search takes exact second derivatives: use fp32")
    ctx, splits = begin_stage(cfg.run, cfg.data, out_dir, resume, force)
    check_precision(cfg.run.precision, ctx.device)
    device = ctx.device
    teacher = load_distillation_teacher(cfg.loss.kd, cfg.teacher, splits.num_train_pids)
    if teacher is not None:
        teacher.to(device)
    m = cfg.model
    model = Supernet(
        C=m.C,
        num_classes=splits.num_train_pids,
        layers=m.layers,
        reduction_positions=tuple(m.reduction_positions),
        steps=m.steps,
        multiplier=m.multiplier,
        stem_multiplier=m.stem_multiplier,
        primitives=tuple(m.primitives),
    ).to(device)
    net = model
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    objective = build_objective(cfg.loss, cfg.run.epochs)
    o = cfg.optim
    w_optimizer = torch.optim.SGD(
        model.weight_parameters(), lr=o.w_lr, momentum=o.w_momentum, weight_decay=o.w_weight_decay
    )
    w_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        w_optimizer, T_max=cfg.run.epochs, eta_min=o.w_lr_min
    )
    architect = Architect(model, objective, o, ctx, precision=cfg.run.precision)
    train_stream, val_stream, steps_per_epoch = _streams(cfg, splits, ctx)

    log = JsonlLog(out_dir / ALPHAS_LOG)
    resume_key = config_hash({k: v for k, v in to_dict(cfg).items() if k != "run"})
    start_epoch = 0
    if resume and (out_dir / LAST_CHECKPOINT).is_file():
        state = load_checkpoint(out_dir / LAST_CHECKPOINT, map_location=device)
        if state.get("resume_key") != resume_key:
            raise KdasError(
                f"{out_dir / LAST_CHECKPOINT} was made with a different config; resume with the "
                "same config, or pass --force to start over"
            )
        model.load_state_dict(state["model"])
        w_optimizer.load_state_dict(state["w_optimizer"])
        w_scheduler.load_state_dict(state["w_scheduler"])
        architect.optimizer.load_state_dict(state["a_optimizer"])
        train_stream.load_state_dict(state["train_stream"])
        val_stream.load_state_dict(state["val_stream"])
        restore_rng_state(rank_rng_state(state["rng"], ctx.rank))
        start_epoch = int(state["epoch"])
        if ctx.is_main:
            log.keep_until(start_epoch)
            console.log(f"resumed search at epoch {start_epoch}")
    elif ctx.is_main and log.path.exists():
        log.path.unlink()

    started = time.perf_counter()
    precision = cfg.run.precision
    with make_progress(cfg.run.progress and ctx.is_main) as progress:
        for epoch in range(start_epoch, cfg.run.epochs):
            kd = objective.state(epoch)
            w_lr = w_optimizer.param_groups[0]["lr"]
            update_alpha = epoch >= o.arch_start_epoch
            task = progress.add_task(
                f"search {epoch + 1}/{cfg.run.epochs}", total=steps_per_epoch, status=""
            )
            sums: dict[str, float] = {}
            t0 = time.perf_counter()
            for step in range(1, steps_per_epoch + 1):
                train = _to_batch(next(train_stream), device, teacher, kd.weight, precision)
                val = _to_batch(next(val_stream), device, teacher, kd.weight, precision)
                w_loss = weight_step(net, train, objective, kd, w_optimizer, o.grad_clip, precision)
                scalars = {f"train_{k}": v for k, v in w_loss.scalars().items()}
                if update_alpha:
                    a_loss = architect.step(val, train, kd, w_lr, w_optimizer)
                    scalars.update({f"val_{k}": v for k, v in a_loss.scalars().items()})
                for name, value in scalars.items():
                    sums[name] = sums.get(name, 0.0) + value
                rate = 2 * step * cfg.data.p * cfg.data.k / max(time.perf_counter() - t0, 1e-9)
                progress.update(
                    task,
                    advance=1,
                    status=f"loss {sums['train_total'] / step:.3f} {rate:.0f} img/s",
                )
            progress.remove_task(task)
            w_scheduler.step()
            epoch_time = time.perf_counter() - t0
            losses = all_reduce_mean(ctx, {k: v / steps_per_epoch for k, v in sums.items()})
            rng_states = gather_objects(ctx, capture_rng_state())  # every rank's, for resume
            if ctx.is_main:
                record = {
                    "epoch": epoch,
                    "temperature": kd.temperature,
                    "kd_weight": kd.weight,
                    "kd_temperature": kd.kd_temperature,
                    "w_lr": w_lr,
                    "losses": losses,
                    "epoch_time_s": epoch_time,
                    "images_per_s": 2
                    * steps_per_epoch
                    * cfg.data.p
                    * cfg.data.k
                    * ctx.world_size
                    / max(epoch_time, 1e-9),
                    **_alphas_record(model, cfg.max_skip_normal),
                }
                log.append(record)
                save_checkpoint(
                    out_dir / LAST_CHECKPOINT,
                    {
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "w_optimizer": w_optimizer.state_dict(),
                        "w_scheduler": w_scheduler.state_dict(),
                        "a_optimizer": architect.optimizer.state_dict(),
                        "train_stream": train_stream.state_dict(),
                        "val_stream": val_stream.state_dict(),
                        "rng": rng_states,
                        "resume_key": resume_key,
                    },
                )
                if cfg.run.progress:
                    console.log(
                        f"search epoch {epoch + 1}/{cfg.run.epochs}: T {kd.temperature:.2f} "
                        f"w {kd.weight:.2f} loss {losses.get('train_total', 0):.3f} "
                        f"skips {record['skip_count']['normal']} ({epoch_time:.1f}s)"
                    )
    genotype = unwrap(net).genotype(max_skip_normal=cfg.max_skip_normal)
    history = log.read() if ctx.is_main else []
    if ctx.is_main:
        save_genotype(
            out_dir / GENOTYPE_FILE,
            genotype,
            alphas=model.alphas_softmax(),
            primitives=model.primitives,
            search_config=to_dict(cfg),
        )
        atomic_write_json(out_dir / "config.json", {"stage": "search", "config": to_dict(cfg)})
        from kdas.search.plots import write_search_pictures

        write_search_pictures(history, genotype, out_dir)
        console.log(f"genotype written to {out_dir / GENOTYPE_FILE}")
    barrier(ctx)
    return SearchResult(genotype, history, out_dir, time.perf_counter() - started)


def _to_batch(
    batch: Any, device: torch.device, teacher: Any, weight: float, precision: str
) -> Batch:
    images, pids = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
    return Batch(images, pids, _teacher_logits(teacher, images, weight, precision))
