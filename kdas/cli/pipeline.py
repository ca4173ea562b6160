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
