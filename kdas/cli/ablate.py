"""`kdas ablate`: the paper's Table 1 (none / constant / dynamic distillation) over seeds."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


def ablate_command(
    out: Path = typer.Option(..., "--out", help="Ablation folder, e.g. runs/NAME/ablation."),
    data: str = typer.Option(None, "--data", help=common.DATA_HELP),
    layout: str = typer.Option(None, "--layout", help=common.LAYOUT_HELP),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher folder (runs/NAME/teacher)."),
    config: Path = typer.Option(
        None, "--config", help="TOML/YAML with [search] and [student] sections."
    ),
    seeds: int = typer.Option(None, "--seeds", help="Runs per mode (paper: 4)."),
    modes: str = typer.Option(None, "--modes", help="Comma list of none,constant,dynamic."),
    search_epochs: int = typer.Option(None, "--search-epochs"),
    train_epochs: int = typer.Option(None, "--train-epochs"),
    retrain_kd: str = typer.Option(
        None, "--retrain-kd", help="same (default), none, constant or dynamic."
    ),
) -> None:
    """Search + retrain for each distillation mode and seed; a table (md + csv) and a plot."""
    from kdas.files import ABLATION_CSV, ABLATION_PLOT, ABLATION_TABLE
    from kdas.search.ablation import AblationConfig, run_ablation, to_markdown
    from kdas.utils.config import load_typed_config

    shared = {"root": data, "layout": layout}
    teacher_path = str(teacher) if teacher else None
    overrides = {
        "search": {"data": shared, "teacher": teacher_path, "run": {"epochs": search_epochs}},
        "student": {"data": shared, "teacher": teacher_path, "run": {"epochs": train_epochs}},
        "seeds": seeds,
        "modes": common.parse_names(modes or None),
        "retrain_kd": retrain_kd,
    }
    cfg = load_typed_config(AblationConfig, config, overrides)
    rows = run_ablation(cfg, out)
    typer.echo(to_markdown(rows))
    typer.echo(f"-> {out / ABLATION_TABLE}, {out / ABLATION_CSV}, {out / ABLATION_PLOT}")
