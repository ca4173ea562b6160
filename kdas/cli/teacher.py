"""`kdas teacher ...`: train the ResNet Re-ID teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("train")
def train(
    data: str = typer.Option(None, "--data", help=common.DATA_HELP),
    layout: str = typer.Option(None, "--layout", help=common.LAYOUT_HELP),
    out: Path = typer.Option(..., "--out", help="Run folder; the teacher goes to OUT/teacher."),
    config: Path = typer.Option(None, "--config", help="TOML/YAML config; options override it."),
    arch: str = typer.Option(None, "--arch", help="resnet50 (default), resnet34 or resnet18."),
    last_stride: int = typer.Option(None, "--last-stride", help="1 (default) or 2."),
    imagenet_weights: Path = typer.Option(
        None, "--imagenet-weights", help="Local torchvision ResNet .pth/.safetensors."
    ),
    epochs: int = typer.Option(None, "--epochs"),
    size: str = typer.Option(None, "--size", help="Input HEIGHTxWIDTH, e.g. 256x128."),
    p: int = typer.Option(None, "--p", help="Identities per batch."),
    k: int = typer.Option(None, "--k", help="Images per identity."),
    lr: float = typer.Option(None, "--lr"),
    optimizer: str = typer.Option(None, "--optimizer", help="adam or sgd."),
    precision: str = typer.Option(
        None, "--precision", help="fp32, bf16 (CPU/CUDA) or fp16 (CUDA)."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    workers: int = typer.Option(None, "--workers", help="Data loader workers."),
    eval_every: int = typer.Option(None, "--eval-every", help="Evaluate every N epochs."),
    seed: int = typer.Option(None, "--seed"),
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    distractors: bool = common.DistractorsOption,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Discard an earlier run in OUT/teacher."),
) -> None:
    """Train a ResNet Re-ID teacher (CE + triplet, BNNeck head); torchrun-ready."""
    from kdas.engine.config import TeacherTrainConfig
    from kdas.engine.stages import train_teacher
    from kdas.utils.config import load_typed_config

    overrides = {
        "data": common.data_overrides(
            data, layout, size, p, k, workers, variant, merge_val, distractors
        ),
        "model": {
            "name": arch,
            "last_stride": last_stride,
            "imagenet_weights": str(imagenet_weights) if imagenet_weights else None,
        },
        "optim": {"lr": lr, "optimizer": optimizer},
        "run": {
            "epochs": epochs,
            "precision": precision,
            "device": device,
            "eval_every": eval_every,
            "seed": seed,
        },
    }
    cfg = load_typed_config(TeacherTrainConfig, config, overrides)
    result = train_teacher(cfg, out / "teacher", resume=resume, force=force)
    if result.metrics and common.is_main_process():
        m = result.metrics
        typer.echo(f"teacher: rank-1 {m['rank1']:.4f} mAP {m['mAP']:.4f} -> {out / 'teacher'}")
