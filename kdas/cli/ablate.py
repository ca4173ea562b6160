"""`kdas ablate`: the paper's Table 1 (none / constant / dynamic distillation) over seeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from kdas.cli import common
from kdas.errors import KdasError


def _base_config(config: Path | None) -> tuple[dict[str, Any], Path | None]:
    """The file's ablation tables, and the default ablation folder when it is a pipeline config.

    A pipeline config (e.g. examples/protocol.toml: keys like `[data]`, `name`) gives its search
    and student recipes, data set and teacher folder; anything else is an ablation config.
    """
    from kdas.pipeline.config import PipelineConfig
    from kdas.search.ablation import AblationConfig, from_pipeline
    from kdas.utils.config import load_config_file, load_typed_config, to_dict

    if config is None:
        return {}, None
    raw = load_config_file(config)
    own = {f.name for f in dataclasses.fields(AblationConfig)}
    pipeline_keys = {f.name for f in dataclasses.fields(PipelineConfig)}
    if not set(raw) - own or not set(raw) <= pipeline_keys:
        return raw, None
    pipeline = load_typed_config(PipelineConfig, config)
    return to_dict(from_pipeline(pipeline)), Path(pipeline.runs_dir) / pipeline.name / "ablation"


def ablate_command(
    out: Path = typer.Option(
        None,
        "--out",
        help="Ablation folder, e.g. runs/NAME/ablation (default with a pipeline config).",
    ),
    data: str = typer.Option(None, "--data", help=common.DATA_HELP),
    layout: str = typer.Option(None, "--layout", help=common.LAYOUT_HELP),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher folder (runs/NAME/teacher)."),
    config: Path = typer.Option(
        None,
        "--config",
        help="TOML/YAML with [search] and [student] sections, or a pipeline config.",
    ),
    seeds: int = typer.Option(None, "--seeds", help="Runs per mode (paper: 4)."),
    modes: str = typer.Option(None, "--modes", help="Comma list of none,constant,dynamic."),
    search_epochs: int = typer.Option(None, "--search-epochs"),
    train_epochs: int = typer.Option(None, "--train-epochs"),
    retrain_kd: str = typer.Option(
        None, "--retrain-kd", help="same (default), none, constant or dynamic."
    ),
) -> None:
    """Search + retrain for each distillation mode and seed; a table (md + csv), a plot, the
    paired per-seed differences between modes and whether the paper's claims hold."""
    from kdas.files import ABLATION_CSV, ABLATION_FILE, ABLATION_PLOT, ABLATION_TABLE
    from kdas.search.ablation import AblationConfig, run_ablation_report
    from kdas.utils.config import deep_merge, from_dict

    base, default_out = _base_config(config)
    out = out or default_out
    if out is None:
        raise KdasError("--out is required (or give --config a pipeline config)")
    shared = {"root": data, "layout": layout}
    teacher_path = str(teacher) if teacher else None
    overrides = {
        "search": {"data": shared, "teacher": teacher_path, "run": {"epochs": search_epochs}},
        "student": {"data": shared, "teacher": teacher_path, "run": {"epochs": train_epochs}},
        "seeds": seeds,
        "modes": common.parse_names(modes or None),
        "retrain_kd": retrain_kd,
    }
    where = str(config) if config else "config"
    cfg = from_dict(AblationConfig, deep_merge(base, overrides), where=where)
    report = run_ablation_report(cfg, out)
    typer.echo(report.markdown().rstrip())  # the table, the differences, then the claims
    names = (ABLATION_TABLE, ABLATION_CSV, ABLATION_PLOT, ABLATION_FILE)
    typer.echo(f"-> {', '.join(str(out / name) for name in names)}")
