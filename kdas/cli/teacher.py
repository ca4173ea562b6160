"""`kdas teacher ...`: train the ResNet Re-ID teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("train")
@common.with_options(common.TrainOptions)
def train(
    *,
    shared: common.TrainOptions,
    out: Path = typer.Option(..., "--out", help="Run folder; the teacher goes to OUT/teacher."),
    arch: str = typer.Option(None, "--arch", help="resnet50 (default), resnet34 or resnet18."),
    last_stride: int = typer.Option(None, "--last-stride", help="1 (default) or 2."),
    imagenet_weights: Path = typer.Option(
        None, "--imagenet-weights", help="Local torchvision ResNet .pth/.safetensors."
    ),
    lr: float = typer.Option(None, "--lr"),
    optimizer: str = typer.Option(None, "--optimizer", help="adam or sgd."),
    eval_every: int = typer.Option(None, "--eval-every", help="Evaluate every N epochs."),
) -> None:
    """Train a ResNet Re-ID teacher (CE + triplet, BNNeck head); torchrun-ready."""
    from kdas.engine.config import TeacherTrainConfig
    from kdas.engine.stages import train_teacher
    from kdas.pipeline.runner import RunPaths
    from kdas.utils.config import load_typed_config

    overrides = shared.overrides(
        model={
            "name": arch,
            "last_stride": last_stride,
            "imagenet_weights": str(imagenet_weights) if imagenet_weights else None,
        },
        optim={"lr": lr, "optimizer": optimizer},
        run={"eval_every": eval_every},
    )
    cfg = load_typed_config(TeacherTrainConfig, shared.config, overrides)
    folder = RunPaths(out).teacher
    result = train_teacher(cfg, folder, resume=shared.resume, force=shared.force)
    if result.metrics and common.is_main_process():
        m = result.metrics
        typer.echo(f"teacher: rank-1 {m['rank1']:.4f} mAP {m['mAP']:.4f} -> {folder}")
