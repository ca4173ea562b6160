"""`kdas train`: retrain the static student of a genotype with distillation."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


def train_command(
    out: Path = typer.Option(..., "--out", help="Student folder, e.g. runs/NAME/student."),
    genotype: Path = typer.Option(None, "--genotype", help="genotype.json from `kdas search`."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher folder for distillation."),
    data: str = typer.Option(None, "--data", help=common.DATA_HELP),
    layout: str = typer.Option(None, "--layout", help=common.LAYOUT_HELP),
    config: Path = typer.Option(None, "--config", help="TOML/YAML config; options override it."),
    kd: str = typer.Option(None, "--kd", help="Distillation: none, constant or dynamic."),
    epochs: int = typer.Option(None, "--epochs"),
    channels: int = typer.Option(None, "--channels", help="Student C (paper: 64)."),
    size: str = typer.Option(None, "--size", help="Input HEIGHTxWIDTH."),
    p: int = typer.Option(None, "--p"),
    k: int = typer.Option(None, "--k"),
    lr: float = typer.Option(None, "--lr"),
    drop_path: float = typer.Option(None, "--drop-path", help="Drop-path probability."),
    precision: str = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (CUDA)."),
    device: str = typer.Option(None, "--device"),
    workers: int = typer.Option(None, "--workers"),
    eval_every: int = typer.Option(None, "--eval-every"),
    seed: int = typer.Option(None, "--seed"),
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    distractors: bool = common.DistractorsOption,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Discard an earlier run in OUT."),
) -> None:
    """Freeze a genotype into a static network and train it (paper 4.2.2); torchrun-ready."""
    from kdas.engine.config import StudentTrainConfig
    from kdas.engine.stages import train_student
    from kdas.utils.config import load_typed_config

    overrides = {
        "genotype": str(genotype) if genotype else None,
        "teacher": str(teacher) if teacher else None,
        "data": common.data_overrides(
            data, layout, size, p, k, workers, variant, merge_val, distractors
        ),
        "model": {"C": channels, "drop_path_prob": drop_path},
        "optim": {"lr": lr},
        "loss": {"kd": {"mode": kd}},
        "run": {
            "epochs": epochs,
            "precision": precision,
            "device": device,
            "eval_every": eval_every,
            "seed": seed,
        },
    }
    cfg = load_typed_config(StudentTrainConfig, config, overrides)
    result = train_student(cfg, out, resume=resume, force=force)
    if result.metrics and common.is_main_process():
        m = result.metrics
        typer.echo(f"student: rank-1 {m['rank1']:.4f} mAP {m['mAP']:.4f} -> {out}")
