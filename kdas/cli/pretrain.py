"""`kdas pretrain`: pre-train the static student of a genotype as an image classifier."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


def pretrain_command(
    out: Path = typer.Option(..., "--out", help="Pre-training folder, e.g. runs/NAME/pretrain."),
    genotype: Path = typer.Option(None, "--genotype", help="genotype.json from `kdas search`."),
    data: Path = typer.Option(
        None, "--data", help="ImageNet-layout folder: ROOT/train/<class>/*.jpg [+ ROOT/val/]."
    ),
    config: Path = typer.Option(None, "--config", help="TOML/YAML config; options override it."),
    channels: int = typer.Option(None, "--channels", help="Student C (paper: 64)."),
    size: str = typer.Option(None, "--size", help="Input HEIGHTxWIDTH (default 256x128)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per batch and process."),
    epochs: int = typer.Option(None, "--epochs"),
    lr: float = typer.Option(None, "--lr"),
    optimizer: str = typer.Option(None, "--optimizer", help="sgd (default) or adam."),
    eval_every: int = typer.Option(None, "--eval-every", help="Evaluate on val/ every N epochs."),
    precision: str = typer.Option(None, "--precision", help=common.PRECISION_HELP),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    workers: int = typer.Option(None, "--workers", help="Data loader workers."),
    seed: int = typer.Option(None, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Discard an earlier run in --out."),
) -> None:
    """Train a genotype's student on classified images (paper 4.4), for `kdas train --init`."""
    from kdas.engine.pretrain import PretrainConfig, pretrain
    from kdas.utils.config import load_typed_config

    overrides = {
        "genotype": str(genotype) if genotype else None,
        "data": {
            "root": str(data) if data else None,
            "size": common.parse_size(size),
            "batch_size": batch_size,
            "num_workers": workers,
        },
        "model": {"C": channels},
        "optim": {"lr": lr, "optimizer": optimizer},
        "run": {
            "epochs": epochs,
            "eval_every": eval_every,
            "precision": precision,
            "device": device,
            "seed": seed,
        },
    }
    cfg = load_typed_config(PretrainConfig, config, overrides)
    result = pretrain(cfg, out, resume=resume, force=force)
    if not common.is_main_process():
        return
    if result.metrics:
        m = result.metrics
        typer.echo(f"pretrain: val top-1 {m['top1']:.4f} top-5 {m['top5']:.4f} -> {out}")
    else:
        typer.echo(f"pretrain: {result.num_classes} classes, no val/ folder to score -> {out}")
