"""Training stages as library calls: `train_teacher` and `train_student` (the CLI wraps them).

Each writes one artifact folder: config.json (the whole typed config + model spec + facts),
model.safetensors, metrics.json, log.jsonl and checkpoints/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdas.data.records import ReIDSplits
from kdas.engine.config import DataConfig, StudentTrainConfig, TeacherTrainConfig
from kdas.engine.distributed import DistContext, barrier
from kdas.engine.runner import EpochRunner
from kdas.engine.trainer import TrainResult, fit
from kdas.errors import KdasError
from kdas.files import GENOTYPE_FILE, METRICS_FILE, TRAIN_LOG
from kdas.losses import LossConfig, ReIDObjective
from kdas.models.artifacts import save_model_artifact
from kdas.models.builder import build_model
from kdas.models.spec import ModelSpec
from kdas.progress import console
from kdas.utils.atomic import atomic_write_json
from kdas.utils.config import check_bounds, config_hash, to_dict


def load_splits(data: DataConfig) -> ReIDSplits:
    """The data set with its validation identities held out (`data.val_fraction`)."""
    from kdas.data.layouts import load_dataset
    from kdas.data.validation import hold_out_validation

    if not data.root:
        raise KdasError("no data set given: pass --data ROOT (and --layout) or set data.root")
    splits = load_dataset(data.root, data.layout, **data.options)
    return hold_out_validation(splits, data.val_fraction, data.val_seed)


def model_facts(model: torch.nn.Module, size: tuple[int, int]) -> dict[str, Any]:
    from kdas.models.facts import count_flops, count_parameters

    was_training = model.training
    facts = {"parameters": count_parameters(model), "flops": count_flops(model, tuple(size))}
    model.train(was_training)
    return facts


def _resume_key(cfg: Any) -> str:
    """What must not change between a checkpoint and its resumption (run.epochs may)."""
    return config_hash({k: v for k, v in to_dict(cfg).items() if k != "run"})


def _finish(
    out_dir: Path,
    model: torch.nn.Module,
    spec: ModelSpec,
    stage: str,
    cfg: Any,
    result: TrainResult,
    ctx: DistContext,
    extra: dict[str, Any] | None = None,
) -> None:
    if ctx.is_main:
        facts = model_facts(model.cpu(), spec.input_size)
        facts["train_wall_time_s"] = result.wall_time_s
        metrics = {
            "final": result.metrics,  # the test split, evaluated once, on the written weights
            "selected": result.selected,
            "epochs": result.epochs,
            "warnings": result.warnings,
        }
        atomic_write_json(out_dir / METRICS_FILE, metrics)
        save_model_artifact(out_dir, model, spec, stage, cfg, facts=facts, extra=extra)
        console.log(f"{stage} written to {out_dir}")
    barrier(ctx)


def load_distillation_teacher(
    loss: LossConfig, teacher: str, num_classes: int
) -> torch.nn.Module | None:
    """The frozen, eval-mode teacher the objective distils from (None when no term uses one)."""
    if not loss.uses_teacher:
        return None
    if not teacher:
        if loss.kd.mode == "none":
            raise KdasError(
                f"loss.lambda_feature = {loss.lambda_feature:g} distils feature maps: it needs "
                "--teacher DIR (or loss.lambda_feature = 0)"
            )
        raise KdasError(f"loss.kd.mode = {loss.kd.mode!r} needs --teacher DIR (or use --kd none)")
    from kdas.models import load as load_model

    model = load_model(teacher, expect=("teacher",), role="--teacher").model
    if model.num_classes != num_classes:
        raise KdasError(
            f"teacher {teacher} knows {model.num_classes} identities but the training set has "
            f"{num_classes}: train the teacher on the same data set and the same "
            "data.val_fraction / data.val_seed"
        )
    return model.requires_grad_(False).eval()


def train_teacher(
    cfg: TeacherTrainConfig, out_dir: str | Path, resume: bool = False, force: bool = False
) -> TrainResult:
    """Train the ResNet teacher with CE + triplet (distillation is for students)."""
    out_dir = Path(out_dir)
    check_bounds(cfg)
    if cfg.loss.uses_teacher:
        raise KdasError(
            "the teacher trains on labels: set loss.kd.mode = 'none' and loss.lambda_feature = 0"
        )
    runner = EpochRunner.open(cfg.run, out_dir, TRAIN_LOG, resume, force)
    splits = load_splits(cfg.data)
    spec = ModelSpec(
        kind="teacher",
        num_classes=splits.num_train_pids,
        input_size=tuple(cfg.data.size),
        teacher=cfg.model,
    )
    model = build_model(spec)
    objective = ReIDObjective(cfg.loss, cfg.run.epochs)
    result = fit(
        model, splits, objective, cfg.data, cfg.optim, runner,
        resume=resume, resume_key=_resume_key(cfg), what=f"the {cfg.model.name} teacher",
    )  # fmt: skip
    _finish(out_dir, model, spec, "teacher", cfg, result, runner.ctx)
    return result


def train_student(
    cfg: StudentTrainConfig, out_dir: str | Path, resume: bool = False, force: bool = False
) -> TrainResult:
    """Retrain the static network of a genotype with the search's objective (paper 4.2.2)."""
    from kdas.models.genotype import genotype_to_dict, load_genotype

    out_dir = Path(out_dir)
    check_bounds(cfg)
    if not cfg.genotype:
        raise KdasError("no genotype given: pass --genotype runs/NAME/search/genotype.json")
    if not 0.0 <= cfg.model.drop_path_prob < 1.0:
        raise KdasError(f"drop_path_prob must be in [0, 1), got {cfg.model.drop_path_prob}")
    genotype = genotype_to_dict(load_genotype(cfg.genotype))
    if cfg.init:  # before the runner's --force clears anything
        from kdas.models.pretrained import weights_path

        weights_path(cfg.init)
    runner = EpochRunner.open(cfg.run, out_dir, TRAIN_LOG, resume, force)
    splits = load_splits(cfg.data)
    teacher = load_distillation_teacher(cfg.loss, cfg.teacher, splits.num_train_pids)
    spec = ModelSpec(
        kind="student",
        num_classes=splits.num_train_pids,
        input_size=tuple(cfg.data.size),
        student=cfg.model,
        genotype=genotype,
    )
    model = build_model(spec)
    if cfg.init:  # every rank loads: DDP starts from identical weights
        from kdas.models.pretrained import load_init_weights

        report = load_init_weights(model, cfg.init)
        if runner.ctx.is_main:
            console.log(report.summary())
    objective = ReIDObjective(cfg.loss, cfg.run.epochs)
    result = fit(
        model, splits, objective, cfg.data, cfg.optim, runner,
        teacher=teacher, resume=resume, resume_key=_resume_key(cfg), what="the student",
    )  # fmt: skip
    if runner.ctx.is_main:
        atomic_write_json(out_dir / GENOTYPE_FILE, genotype)
    extra = {"teacher": cfg.teacher}
    _finish(out_dir, model, spec, "student", cfg, result, runner.ctx, extra=extra)
    return result
