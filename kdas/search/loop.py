"""Algorithm 1 of KDAS-ReID: alternate weight steps on D_train and α steps on D_val, with the
distillation temperature updated per epoch and the genotype derived after every epoch.

The search is an `EpochJob` of the one epoch runner, which owns DDP, resume, logs and the bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdas.engine.distributed import DistContext, barrier, unwrap
from kdas.engine.runner import EpochJob, EpochRunner, StepOutput
from kdas.engine.stages import load_distillation_teacher, load_splits
from kdas.engine.trainer import backward_and_step, teacher_logits
from kdas.errors import KdasError
from kdas.files import CONFIG_FILE, GENOTYPE_FILE, SEARCH_LOG
from kdas.losses.objective import ReIDObjective
from kdas.models.ops import resolve_primitives
from kdas.progress import console
from kdas.search.architect import Architect, Batch, batch_loss
from kdas.search.budget import BudgetFit, fit_to_budget
from kdas.search.config import SearchConfig
from kdas.search.latency import LatencyTerm, build_latency_term
from kdas.search.stability import early_stop_reason, stability_record
from kdas.utils.atomic import atomic_write_json
from kdas.utils.config import check_bounds, config_hash, to_dict


@dataclass
class SearchResult:
    genotype: Any  # kdas.models.genotype.Genotype
    history: list[dict[str, Any]]
    out_dir: Path
    wall_time_s: float
    stopped: str | None = None  # why the search ended early (search.early_stop_skips)


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
    backward_and_step(loss.total, optimizer, None, model.weight_parameters(), grad_clip)
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


def _alphas_record(model: Any, genotype: Any) -> dict[str, Any]:
    """α, the derived genotype (with the skip cap) and the collapse signals of raw α."""
    from kdas.models.genotype import count_skips, genotype_to_dict

    alphas = model.alphas_softmax()
    return {
        "alphas": {"normal": alphas["normal"].tolist(), "reduce": alphas["reduce"].tolist()},
        "genotype": genotype_to_dict(genotype, primitives=model.primitives),
        "skip_count": {
            "normal": count_skips(genotype, "normal"),
            "reduce": count_skips(genotype, "reduce"),
        },
        **stability_record(alphas, model.genotype()),
    }


def build_supernet(cfg: SearchConfig, num_classes: int) -> torch.nn.Module:
    from kdas.models.supernet import Supernet

    return Supernet(num_classes, cfg.model, primitives=resolve_primitives(cfg.ops))


def derive(cfg: SearchConfig, model: Any, term: LatencyTerm | None) -> tuple[Any, BudgetFit | None]:
    """The genotype α points to (skip cap applied), repaired to meet the latency target when the
    search has one and `latency.enforce` is on (`kdas.search.budget`)."""
    genotype = model.genotype(max_skip_normal=cfg.max_skip_normal)
    if term is None or not cfg.latency.enforce:
        return genotype, None
    weights = {k: v.numpy() for k, v in model.alphas_softmax().items()}
    fit = fit_to_budget(
        genotype, weights, model.primitives, term.table, term.target_ms, cfg.max_skip_normal
    )
    return fit.genotype, fit


def _latency_record(
    term: LatencyTerm | None, model: Any, genotype: Any, fit: BudgetFit | None
) -> dict[str, Any]:
    """E[lat] under the current α and the derived genotype's predicted latency (table ms)."""
    if term is None:
        return {}
    with torch.no_grad():
        out = term(model.alpha_normal, model.alpha_reduce)
    record = {
        "expected_ms": out.expected_ms,
        "predicted_ms": term.predicted_ms(genotype),
        "target_ms": term.target_ms,
        "weight": term.weight,
        "term": float(out.total),
        "backend": term.table.backend,
    }
    if fit is not None:
        record |= {"argmax_ms": fit.argmax_ms, "swaps": len(fit.swaps), "met": fit.met}
        if fit.cheapest_ms is not None:
            record["cheapest_ms"] = fit.cheapest_ms
    return {"latency": record}


class SearchJob(EpochJob):
    """One epoch of Algorithm 1: a w step on a D_train batch, then an α step on a D_val batch."""

    label = "search"
    progress_key = "train_total"

    def __init__(
        self,
        cfg: SearchConfig,
        model: torch.nn.Module,
        splits: Any,
        teacher: torch.nn.Module | None,
        runner: EpochRunner,
        latency: LatencyTerm | None = None,
    ) -> None:
        self.cfg, self.model, self.runner = cfg, model, runner
        self.latency = latency
        self.net = runner.place(model)
        self.teacher = runner.place_frozen(teacher) if teacher is not None else None
        self.objective = ReIDObjective(cfg.loss, cfg.run.epochs)
        o = cfg.optim
        self.w_optimizer = torch.optim.SGD(
            model.weight_parameters(),
            lr=o.w_lr,
            momentum=o.w_momentum,
            weight_decay=o.w_weight_decay,
        )
        self.w_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optimizer, T_max=cfg.run.epochs, eta_min=o.w_lr_min
        )
        self.architect = Architect(
            model, self.objective, o, runner.ctx, precision=cfg.run.precision, penalty=latency
        )
        self.train_stream, self.val_stream, self.steps = _streams(cfg, splits, runner.ctx)
        self.kd = self.objective.state(0)
        self.w_lr = o.w_lr

    def steps_per_epoch(self) -> int:
        return self.steps

    def batches(self, epoch: int) -> Any:
        self.kd = self.objective.state(epoch)
        self.w_lr = self.w_optimizer.param_groups[0]["lr"]
        return range(self.steps)

    def _batch(self, stream: Any) -> Batch:
        images, pids = next(stream)[:2]
        images = self.runner.to_device(images)
        pids = pids.to(self.runner.device, non_blocking=True)
        targets = teacher_logits(self.teacher, images, self.kd.weight, self.cfg.run.precision)
        return Batch(images, pids, targets)

    def step(self, batch: Any, epoch: int) -> StepOutput:
        o, precision = self.cfg.optim, self.cfg.run.precision
        train, val = self._batch(self.train_stream), self._batch(self.val_stream)
        w_loss = weight_step(
            self.net, train, self.objective, self.kd, self.w_optimizer, o.grad_clip, precision
        )
        scalars = {f"train_{k}": v for k, v in w_loss.scalars().items()}
        if epoch >= o.arch_start_epoch:
            a_loss = self.architect.step(val, train, self.kd, self.w_lr, self.w_optimizer)
            scalars.update({f"val_{k}": v for k, v in a_loss.scalars().items()})
            if self.architect.last_penalty is not None:
                scalars["val_latency"] = float(self.architect.last_penalty.total.detach())
        return StepOutput(scalars, len(train.images) + len(val.images))

    def end_epoch(self, epoch: int, means: dict[str, float]) -> dict[str, Any]:
        self.w_scheduler.step()
        genotype, fit = derive(self.cfg, self.model, self.latency)
        return {
            "temperature": self.kd.temperature,
            "kd_weight": self.kd.weight,
            "kd_temperature": self.kd.kd_temperature,
            "w_lr": self.w_lr,
            "losses": means,
            **_alphas_record(self.model, genotype),
            **_latency_record(self.latency, self.model, genotype, fit),
        }

    def stop_reason(self, record: dict[str, Any]) -> str | None:
        return early_stop_reason(record, self.cfg.early_stop_skips)

    def summary(self, record: dict[str, Any]) -> str:
        text = (
            f"T {record['temperature']:.2f} w {record['kd_weight']:.2f} "
            f"loss {record['losses'].get('train_total', 0):.3f} "
            f"skips {record['skip_count']['normal']} "
            f"H(α) {record['alpha_entropy']['normal']:.2f}"
        )
        lat = record.get("latency")
        if lat:
            text += (
                f" E[lat] {lat['expected_ms']:.2f} ms, derived {lat['predicted_ms']:.2f} ms "
                f"(target {lat['target_ms']:.2f})"
            )
        return text

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "w_scheduler": self.w_scheduler.state_dict(),
            "a_optimizer": self.architect.optimizer.state_dict(),
            "train_stream": self.train_stream.state_dict(),
            "val_stream": self.val_stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.w_scheduler.load_state_dict(state["w_scheduler"])
        self.architect.optimizer.load_state_dict(state["a_optimizer"])
        self.train_stream.load_state_dict(state["train_stream"])
        self.val_stream.load_state_dict(state["val_stream"])


def _check_objective(cfg: SearchConfig) -> None:
    if cfg.early_stop_skips is not None and cfg.early_stop_skips < 1:
        raise KdasError(
            f"search.early_stop_skips must be >= 1 (or unset), got {cfg.early_stop_skips}"
        )
    if cfg.loss.lambda_feature > 0:
        raise KdasError(
            "loss.lambda_feature (feature-map distillation) is a retraining option; the search "
            "distils logits only: set search.loss.lambda_feature = 0"
        )


def _check_precision(cfg: SearchConfig) -> None:
    if cfg.run.precision == "fp16":
        raise KdasError(
            "the search has no fp16 loss scaling for its two optimisers: use bf16 (or fp32)"
        )
    if cfg.optim.order == 2 and cfg.run.precision != "fp32":
        raise KdasError("second-order search takes exact second derivatives: use fp32")


def _write_results(cfg: SearchConfig, model: Any, genotype: Any, history: list, out: Path) -> None:
    from kdas.models.genotype import save_genotype
    from kdas.search.plots import write_search_pictures

    save_genotype(
        out / GENOTYPE_FILE,
        genotype,
        alphas=model.alphas_softmax(),
        primitives=model.primitives,
        search_config=to_dict(cfg),
    )
    atomic_write_json(out / CONFIG_FILE, {"stage": "search", "config": to_dict(cfg)})
    write_search_pictures(history, genotype, out)
    console.log(f"genotype written to {out / GENOTYPE_FILE}")


def run_search(
    cfg: SearchConfig, out_dir: str | Path, resume: bool = False, force: bool = False
) -> SearchResult:
    """Search a cell; writes genotype.json, alphas.jsonl, pictures and checkpoints/."""
    out_dir = Path(out_dir)
    check_bounds(cfg)
    _check_precision(cfg)
    _check_objective(cfg)
    primitives = resolve_primitives(cfg.ops)
    latency = build_latency_term(cfg, primitives, cfg.model)  # a bad table fails before writing
    runner = EpochRunner.open(cfg.run, out_dir, SEARCH_LOG, resume, force)
    splits = load_splits(cfg.data)
    teacher = load_distillation_teacher(cfg.loss, cfg.teacher, splits.num_train_pids)
    model = build_supernet(cfg, splits.num_train_pids)
    job = SearchJob(cfg, model, splits, teacher, runner, latency)
    resume_key = config_hash({k: v for k, v in to_dict(cfg).items() if k != "run"})
    summary = runner.fit(job, resume, resume_key)
    genotype, fit = derive(cfg, model, latency)
    if fit is not None and not fit.met:
        console.log(
            f"[yellow]no cell meets the latency target {latency.target_ms:.2f} ms[/] (the "
            f"cheapest is predicted at {fit.cheapest_ms:.2f} ms), so the α-argmax cell is "
            f"written unchanged ({fit.predicted_ms:.2f} ms): search a shallower student "
            "(model.layers, its table from kdas latency profile --layers --reductions) or "
            "raise the target"
        )
    history = runner.log.read() if runner.ctx.is_main else []
    if runner.ctx.is_main:
        _write_results(cfg, model, genotype, history, out_dir)
    barrier(runner.ctx)
    return SearchResult(genotype, history, out_dir, summary.wall_time_s, summary.stopped)
