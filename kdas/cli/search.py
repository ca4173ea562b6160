"""`kdas search`: the KD-guided differentiable architecture search."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


@common.with_options(common.TrainOptions)
def search_command(
    *,
    shared: common.TrainOptions,
    out: Path = typer.Option(..., "--out", help="Search folder, e.g. runs/NAME/search."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher folder (runs/NAME/teacher)."),
    kd: str = typer.Option(None, "--kd", help="Distillation: none, constant or dynamic."),
    order: int = typer.Option(None, "--order", help="1 (first order) or 2 (DARTS unrolled)."),
    channels: int = typer.Option(None, "--channels", help="Supernet C (paper: 32)."),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", help="Batches per epoch."),
    max_skips: int = typer.Option(None, "--max-skips", help="Cap skip connections (normal cell)."),
    early_stop_skips: int = typer.Option(
        None, "--early-stop-skips", help="DARTS+: stop once α's normal cell holds N skips."
    ),
    ops: str = typer.Option(
        None, "--ops", help="Primitive set (auto-reid, auto-reid+dense) or comma-separated ops."
    ),
    latency_table: Path = typer.Option(
        None, "--latency-table", help="Latency table JSON (kdas latency profile)."
    ),
    latency_target: str = typer.Option(
        None, "--latency-target", help="Budget: ms (4.5) or a teacher share (0.3x-teacher)."
    ),
    latency_weight: float = typer.Option(
        None, "--latency-weight", help="λ of the latency term (default 1)."
    ),
    allow_foreign_lut: bool = typer.Option(
        None, "--allow-foreign-lut", help="Accept a table measured on another machine kind."
    ),
    latency_enforce: bool = typer.Option(
        None,
        "--latency-enforce/--no-latency-enforce",
        help="Repair the derived cell to meet the target (default on).",
    ),
) -> None:
    """Search a Re-ID cell guided by the teacher (distillation + triplet, DARTS relaxation)."""
    from kdas.files import GENOTYPE_FILE
    from kdas.search.config import SearchConfig
    from kdas.search.loop import run_search
    from kdas.utils.config import load_typed_config

    overrides = shared.overrides(
        teacher=str(teacher) if teacher else None,
        data={"batches_per_epoch": steps_per_epoch},
        model={"C": channels},
        optim={"order": order},
        loss={"kd": {"mode": kd}},
        max_skip_normal=max_skips,
        early_stop_skips=early_stop_skips,
        ops=common.op_set(ops),
        latency={
            "table": str(latency_table) if latency_table else None,
            "target": latency_target,
            "weight": latency_weight,
            "allow_foreign": allow_foreign_lut,
            "enforce": latency_enforce,
        },
    )
    cfg = load_typed_config(SearchConfig, shared.config, overrides)
    result = run_search(cfg, out, resume=shared.resume, force=shared.force)
    if not common.is_main_process():
        return
    if result.stopped:
        typer.echo(f"search stopped early: {result.stopped}")
    g = result.genotype
    typer.echo("normal: " + " ".join(f"{op}@{i}" for op, i in g.normal))
    typer.echo("reduce: " + " ".join(f"{op}@{i}" for op, i in g.reduce))
    typer.echo(f"genotype -> {out / GENOTYPE_FILE}")
