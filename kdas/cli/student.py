"""`kdas train`: retrain the static student of a genotype with distillation."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


@common.with_options(common.TrainOptions)
def train_command(
    *,
    shared: common.TrainOptions,
    out: Path = typer.Option(..., "--out", help="Student folder, e.g. runs/NAME/student."),
    genotype: Path = typer.Option(None, "--genotype", help="genotype.json from `kdas search`."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher folder for distillation."),
    init: Path = typer.Option(
        None, "--init", help="Pre-trained start: a `kdas pretrain` folder or .safetensors."
    ),
    kd: str = typer.Option(None, "--kd", help="Distillation: none, constant or dynamic."),
    feature_kd: float = typer.Option(
        None, "--feature-kd", help="λ of feature-map distillation (last map, 1x1 adapter); 0 off."
    ),
    channels: int = typer.Option(None, "--channels", help="Student C (paper: 64)."),
    lr: float = typer.Option(None, "--lr"),
    drop_path: float = typer.Option(None, "--drop-path", help="Drop-path probability."),
    eval_every: int = typer.Option(None, "--eval-every", help="Evaluate every N epochs."),
) -> None:
    """Freeze a genotype into a static network and train it (paper 4.2.2); torchrun-ready."""
    from kdas.engine.config import StudentTrainConfig
    from kdas.engine.stages import train_student
    from kdas.utils.config import load_typed_config

    overrides = shared.overrides(
        genotype=str(genotype) if genotype else None,
        teacher=str(teacher) if teacher else None,
        init=str(init) if init else None,
        model={"C": channels, "drop_path_prob": drop_path},
        optim={"lr": lr},
        loss={"kd": {"mode": kd}, "lambda_feature": feature_kd},
        run={"eval_every": eval_every},
    )
    cfg = load_typed_config(StudentTrainConfig, shared.config, overrides)
    result = train_student(cfg, out, resume=shared.resume, force=shared.force)
    if result.metrics and common.is_main_process():
        m = result.metrics
        typer.echo(f"student: rank-1 {m['rank1']:.4f} mAP {m['mAP']:.4f} -> {out}")
