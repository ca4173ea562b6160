"""The one epoch loop of kdas. Teacher training, student retraining and the search each supply an
`EpochJob` (their step and their stateful parts); the runner owns what they share: device and
DDP, seeding, the output folder's guard, resume (one checkpoint name, one resume key), every
rank's RNG state, the JSONL log, the progress bar and when to evaluate. Resume is therefore
proven once, here, for all three.
"""

from __future__ import annotations

import random
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdas.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    rank_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from kdas.engine.config import RunConfig
from kdas.engine.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    gather_objects,
    setup_distributed,
)
from kdas.engine.logs import JsonlLog
from kdas.engine.precision import check_precision
from kdas.errors import KdasError
from kdas.files import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    GENOTYPE_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    SEARCH_LOG,
    TRAIN_LOG,
    WEIGHTS_FILE,
)
from kdas.progress import console, make_progress
from kdas.utils.outputs import check_out_dir

# What `--force` sets aside from a stage folder when the new run starts.
STAGE_FILES = (
    CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, TRAIN_LOG, SEARCH_LOG, CHECKPOINT_DIR, GENOTYPE_FILE
)  # fmt: skip
SET_ASIDE_DIR = ".kdas-replaced"


@dataclass
class StepOutput:
    scalars: dict[str, float]  # summed over the epoch, then averaged over steps and ranks
    images: int  # images this rank consumed in the step (for img/s)


class EpochJob(ABC):
    """What a long job supplies to the runner. `state_dict` holds every stateful part that a
    resume must restore (weights, optimizers, schedulers, α, samplers, the job's own records)."""

    label = "epoch"  # progress-bar text
    progress_key = "total"  # the step scalar the bar shows as "loss"

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Batches in one epoch (the progress bar's total and the loss means' divisor)."""

    @abstractmethod
    def batches(self, epoch: int) -> Iterable[Any]:
        """Called once at the start of an epoch: prepare it and return its batches."""

    @abstractmethod
    def step(self, batch: Any, epoch: int) -> StepOutput:
        """One optimisation step on one batch."""

    @abstractmethod
    def end_epoch(self, epoch: int, means: dict[str, float]) -> dict[str, Any]:
        """Step the schedulers; return this epoch's fields of the log record."""

    def evaluate(self, epoch: int) -> dict[str, Any] | None:
        """Metrics on the epochs the runner asks for (`run.eval_every`); None: nothing to do."""
        return None

    def status(self) -> str:
        """Extra text for the progress bar (e.g. the learning rate)."""
        return ""

    def summary(self, record: dict[str, Any]) -> str:
        """The epoch's one line on the console."""
        return f"loss {record.get('loss_total', 0):.4f}"

    def stop_reason(self, record: dict[str, Any]) -> str | None:
        """Why to end the run after this epoch (early stopping); None: go on."""
        return None

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs besides the epoch and the RNG states."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` wrote (the checkpoint holds its keys at the top level)."""


@dataclass
class RunSummary:
    start_epoch: int  # where this invocation began (> 0 after a resume)
    epochs: int  # epochs the run has done (fewer than run.epochs after an early stop)
    wall_time_s: float
    stopped: str | None = None  # the early stop's reason


def wants_eval(epoch: int, epochs: int, every: int) -> bool:
    last = epoch == epochs - 1
    return last or (every > 0 and (epoch + 1) % every == 0)


def has_checkpoint(out_dir: str | Path) -> bool:
    """Whether `out_dir` holds a run that `--resume` can continue."""
    return (Path(out_dir) / LAST_CHECKPOINT).is_file()


def _stage_entries(out_dir: Path) -> list[Path]:
    return [out_dir / name for name in STAGE_FILES if (out_dir / name).exists()]


def recover_set_aside(out_dir: Path) -> None:
    """Finish what an interrupted `--force` left: the earlier run comes back when the new one
    never wrote its first checkpoint; otherwise the new run owns the folder and the old one goes."""
    aside = out_dir / SET_ASIDE_DIR
    if not aside.is_dir():
        return
    if _stage_entries(out_dir):
        shutil.rmtree(aside)
        return
    for entry in sorted(aside.iterdir()):
        entry.rename(out_dir / entry.name)
    aside.rmdir()
    console.log(f"restored the run in {out_dir} that an interrupted --force had set aside")


def check_stage_dir(out_dir: Path, resume: bool, force: bool) -> None:
    """Never clobber work by accident, and never start what the user did not ask for: a
    finished or unfinished run needs --force or --resume, and --resume needs a checkpoint.
    Writes nothing (but the recovery of an interrupted --force)."""
    check_out_dir(out_dir)
    recover_set_aside(out_dir)
    if force:
        return
    finished = (out_dir / CONFIG_FILE).is_file()
    if resume:
        if has_checkpoint(out_dir):
            return
        if finished:
            raise KdasError(
                f"nothing to resume: {out_dir} holds a finished run whose checkpoint "
                f"({LAST_CHECKPOINT}) is gone; pass --force to train again"
            )
        raise KdasError(
            f"nothing to resume: {out_dir} has no checkpoint ({LAST_CHECKPOINT}); "
            "run without --resume to start"
        )
    if finished:
        raise KdasError(f"{out_dir} already holds a trained model; pass --force to train again")
    if has_checkpoint(out_dir):
        raise KdasError(
            f"{out_dir} holds an unfinished run; pass --resume to continue it or --force to restart"
        )


class SetAside:
    """`--force` without loss: the earlier run's files move into OUT/.kdas-replaced when the
    new run starts, come back if it fails before its first checkpoint, and are deleted once
    that checkpoint is written (from then on the new run is the one to resume)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.aside = out_dir / SET_ASIDE_DIR
        self.active = False

    def begin(self) -> None:
        entries = _stage_entries(self.out_dir)
        if not entries:
            return
        self.aside.mkdir()
        for entry in entries:
            entry.rename(self.aside / entry.name)
        self.active = True

    def restore(self) -> None:
        """After a failure: the old run comes back unless the new one has a checkpoint."""
        if not self.active:
            return
        if has_checkpoint(self.out_dir):
            self.discard()
            return
        for name in STAGE_FILES:  # what the failed start wrote
            target = self.out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for entry in sorted(self.aside.iterdir()):
            entry.rename(self.out_dir / entry.name)
        self.aside.rmdir()
        self.active = False

    def discard(self) -> None:
        if self.active:
            shutil.rmtree(self.aside)
            self.active = False


def seed_everything(run: RunConfig, ctx: DistContext) -> None:
    """One seed per job; ranks differ so their augmentations differ."""
    seed = run.seed + ctx.rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if run.threads:
        torch.set_num_threads(run.threads)


class EpochRunner:
    """Runs an `EpochJob` for `run.epochs` epochs in `out_dir`; rank 0 writes the log and the
    checkpoint after every epoch."""

    def __init__(
        self, run: RunConfig, out_dir: Path, ctx: DistContext, log_name: str, force: bool = False
    ) -> None:
        self.run_config = run
        self.force = force
        self.out_dir = Path(out_dir)
        self.ctx = ctx
        self.log = JsonlLog(self.out_dir / log_name)
        channels_last = run.channels_last
        if channels_last is None:
            channels_last = ctx.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @classmethod
    def open(
        cls, run: RunConfig, out_dir: str | Path, log_name: str, resume: bool, force: bool
    ) -> EpochRunner:
        """Join DDP, check the precision, check the output folder (rank 0) and seed. Nothing is
        written or removed until `fit` starts, so the stage can still validate its inputs."""
        out_dir = Path(out_dir)
        ctx = setup_distributed(run.device)
        check_precision(run.precision, ctx.device)
        if ctx.is_main:
            check_stage_dir(out_dir, resume, force)
        barrier(ctx)
        seed_everything(run, ctx)
        return cls(run, out_dir, ctx, log_name, force=force)

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move a trainable model to the device; returns what the step should call (the model
        itself, or its DistributedDataParallel wrapper under torchrun)."""
        model.to(self.device, memory_format=self.memory_format)
        if not self.ctx.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def place_frozen(self, model: torch.nn.Module) -> torch.nn.Module:
        """A model that only gives targets (the distillation teacher): eval mode, no gradients."""
        model.to(self.device, memory_format=self.memory_format).eval()
        return model.requires_grad_(False)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True, memory_format=self.memory_format)

    def _restore(self, job: EpochJob, resume_key: str) -> int:
        path = self.checkpoint_path
        state = load_checkpoint(path, map_location=self.device)
        if state.get("resume_key", "") != resume_key:
            raise KdasError(
                f"{path} was made with a different data/model/optimiser/loss config; "
                "resume with the same config, or pass --force to start over"
            )
        job.load_state_dict(state)
        restore_rng_state(rank_rng_state(state["rng"], self.ctx.rank))
        start_epoch = int(state["epoch"])
        self.stopped = state.get("stopped")
        if self.ctx.is_main:
            self.log.keep_until(start_epoch)
            console.log(f"resumed from {path} at epoch {start_epoch}")
        return start_epoch

    def fit(self, job: EpochJob, resume: bool, resume_key: str) -> RunSummary:
        set_aside = SetAside(self.out_dir)
        if self.ctx.is_main and self.force:
            set_aside.begin()
        try:
            return self._fit(job, resume and not self.force, resume_key, set_aside)
        except BaseException:
            if self.ctx.is_main:
                set_aside.restore()
            raise

    def _fit(self, job: EpochJob, resume: bool, resume_key: str, set_aside: SetAside) -> RunSummary:
        run, ctx = self.run_config, self.ctx
        start_epoch, done = 0, 0
        self.stopped: str | None = None
        if resume and self.checkpoint_path.is_file():
            start_epoch = done = self._restore(job, resume_key)
        elif ctx.is_main and self.log.path.exists():
            self.log.path.unlink()
        started = time.perf_counter()
        with make_progress(run.progress and ctx.is_main) as progress:
            for epoch in range(start_epoch, run.epochs):
                if self.stopped:
                    break
                record = self._epoch(job, epoch, progress)
                self.stopped = job.stop_reason(record)  # every rank sees the same record
                if self.stopped:
                    record["stopped"] = self.stopped
                self._checkpoint(job, epoch, record, resume_key)
                if ctx.is_main:
                    set_aside.discard()  # the new run can be resumed now
                done = epoch + 1
                if self.stopped and ctx.is_main:
                    console.log(f"{job.label} stopped after epoch {epoch + 1}: {self.stopped}")
        return RunSummary(start_epoch, done, time.perf_counter() - started, self.stopped)

    def _epoch(self, job: EpochJob, epoch: int, progress: Any) -> dict[str, Any]:
        run, ctx = self.run_config, self.ctx
        batches = job.batches(epoch)
        steps = job.steps_per_epoch()
        task = progress.add_task(f"{job.label} {epoch + 1}/{run.epochs}", total=steps, status="")
        sums: dict[str, float] = {}
        images, t0 = 0, time.perf_counter()
        for step, batch in enumerate(batches, start=1):
            out = job.step(batch, epoch)
            for name, value in out.scalars.items():
                sums[name] = sums.get(name, 0.0) + value
            images += out.images
            rate = images * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
            loss = sums.get(job.progress_key, 0.0) / step
            status = f"loss {loss:.3f} {job.status()}{rate:.0f} img/s"
            progress.update(task, advance=1, status=status)
        progress.remove_task(task)
        epoch_time = time.perf_counter() - t0
        means = all_reduce_mean(ctx, {k: v / max(steps, 1) for k, v in sums.items()})
        record: dict[str, Any] = {"epoch": epoch, **job.end_epoch(epoch, means)}
        record["images_per_s"] = images * ctx.world_size / max(epoch_time, 1e-9)
        record["epoch_time_s"] = epoch_time
        if wants_eval(epoch, run.epochs, run.eval_every):
            metrics = job.evaluate(epoch)
            if metrics is not None:
                record["eval"] = metrics
        return record

    def _checkpoint(
        self, job: EpochJob, epoch: int, record: dict[str, Any], resume_key: str
    ) -> None:
        rng_states = gather_objects(self.ctx, capture_rng_state())  # every rank's, for resume
        if not self.ctx.is_main:
            return
        self.log.append(record)
        state = {"epoch": epoch + 1, "rng": rng_states, "resume_key": resume_key}
        if self.stopped:
            state["stopped"] = self.stopped
        save_checkpoint(self.checkpoint_path, {**state, **job.state_dict()})
        if self.run_config.progress:
            console.log(
                f"{job.label} {epoch + 1}/{self.run_config.epochs} {job.summary(record)} "
                f"({record['epoch_time_s']:.1f}s, {record['images_per_s']:.0f} img/s)"
            )
