"""`kdas pipeline CONFIG`: the whole mission from one config file."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


def pipeline_command(
    config: Path = typer.Argument(
        ..., help="Pipeline config (TOML/YAML), e.g. examples/demo.toml."
    ),
    force: bool = typer.Option(False, "--force", help="Run every stage again, even if up to date."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted stage."),
    name: str = typer.Option(None, "--name", help="Run name (default: the config's)."),
    runs_dir: str = typer.Option(None, "--runs-dir", help="Where run folders go (default runs/)."),
    stages: str = typer.Option(
        None, "--stages", help="Comma list of stages to run (default: the config's, all)."
    ),
) -> None:
    """Every stage from data to report; finished stages with an unchanged config are skipped."""
    from kdas.pipeline.config import PipelineConfig
    from kdas.pipeline.runner import run_pipeline
    from kdas.pipeline.stages import STAGE_FUNCTIONS
    from kdas.utils.config import load_typed_config

    overrides = {
        "name": name,
        "runs_dir": runs_dir,
        "stages": common.parse_names(stages or None),
    }
    cfg = load_typed_config(PipelineConfig, config, overrides)
    run_pipeline(cfg, STAGE_FUNCTIONS, force=force, resume=resume)


def pareto_command(
    runs: list[Path] = typer.Argument(..., help="Pipeline run folders (runs/NAME), one each."),
    out: Path = typer.Option(..., "--out", help="Folder for pareto.png and pareto.json."),
    batch: int = typer.Option(1, "--batch", help="Batch size whose latency is plotted."),
) -> None:
    """mAP against measured latency of the runs' students (each on its best backend), with the
    teacher marked."""
    from kdas.files import PARETO_PLOT
    from kdas.pipeline.pareto import write_pareto

    points = write_pareto(runs, out, batch=batch)
    for p in points["students"]:
        typer.echo(
            f"{p['run']}: target {p['target']}, mAP {100 * p['mAP']:.1f}, "
            f"{p['latency_ms']:.2f} ms ({p['backend']})"
        )
    if points["teacher"]:
        t = points["teacher"]
        typer.echo(f"teacher: mAP {100 * t['mAP']:.1f}, {t['latency_ms']:.2f} ms ({t['backend']})")
    typer.echo(f"-> {out / PARETO_PLOT}")
