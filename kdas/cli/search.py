"""`kdas search`: the KD-guided differentiable architecture search."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


def search_command(
    out: Path = typer.Option(..., "--out", help="Search folder, e.g. runs/NAME/search."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher folder (runs/NAME/teacher)."),
    data: str = typer.Option(None, "--data", help=common.DATA_HELP),
    layout: str = typer.Option(None, "--layout", help=common.LAYOUT_HELP),
    config: Path = typer.Option(None, "--config", help="TOML/YAML config; options override it."),
    kd: str = typer.Option(None, "--kd", help="Distillation: none, constant or dynamic."),
    order: int = typer.Option(None, "--order", help="1 (first order) or 2 (DARTS unrolled)."),
    epochs: int = typer.Option(None, "--epochs"),
    channels: int = typer.Option(None, "--channels", help="Supernet C (paper: 32)."),
    size: str = typer.Option(None, "--size", help="Input HEIGHTxWIDTH."),
    p: int = typer.Option(None, "--p", help="Identities per batch (paper: 8)."),
    k: int = typer.Option(None, "--k", help="Images per identity (paper: 2)."),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", help="Batches per epoch."),
    max_skips: int = typer.Option(None, "--max-skips", help="Cap skip connections (normal cell)."),
    precision: str = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (CUDA)."),
    device: str = typer.Option(None, "--device"),
    workers: int = typer.Option(None, "--workers"),
    seed: int = typer.Option(None, "--seed"),
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    distractors: bool = common.DistractorsOption,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Discard an earlier search in OUT."),
) -> None:
    """Search a Re-ID cell guided by the teacher (distillation + triplet, DARTS relaxation)."""
    from kdas.search.config import SearchConfig
    from kdas.search.loop import run_search
    from kdas.utils.config import load_typed_config

    overrides = {
        "teacher": str(teacher) if teacher else None,
        "data": common.data_overrides(
            data,
            layout,
            size,
            p,
            k,
            workers,
            variant,
            merge_val,
            distractors,
            batches_per_epoch=steps_per_epoch,
        ),
        "model": {"C": channels},
        "optim": {"order": order},
        "loss": {"kd": {"mode": kd}},
        "run": {"epochs": epochs, "precision": precision, "device": device, "seed": seed},
        "max_skip_normal": max_skips,
    }
    cfg = load_typed_config(SearchConfig, config, overrides)
    result = run_search(cfg, out, resume=resume, force=force)
    if not common.is_main_process():
        return
    g = result.genotype
    typer.echo("normal: " + " ".join(f"{op}@{i}" for op, i in g.normal))
    typer.echo("reduce: " + " ".join(f"{op}@{i}" for op, i in g.reduce))
    typer.echo(f"genotype -> {out / 'genotype.json'}")
