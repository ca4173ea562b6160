"""`kdas latency ...`: measure the latency table of the hardware-aware search on this machine,
and check its predictions against whole networks (kdas.export.latency_profile)."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common

app = typer.Typer(no_args_is_help=True)

# Options left unset stay None: `kdas.export.latency_profile.ProfileConfig` holds the defaults.


@app.command("profile")
def profile_command(
    out: Path = typer.Option(..., "--out", help="The latency table (JSON) to write."),
    backend: str = typer.Option(
        None,
        "--backend",
        help="ort-fp32, ort-int8, openvino-fp32, openvino-bf16, openvino-int8, tensorrt-fp16 "
        "or tensorrt-int8.",
    ),
    size: str = typer.Option(None, "--size", help="Input HxW, e.g. 256x128."),
    channels: int = typer.Option(None, "--C", help="The deployed (student) width C."),
    layers: int = typer.Option(None, "--layers", help="Cells in the student (its macro)."),
    reductions: str = typer.Option(
        None, "--reductions", help="Reduction cell positions, e.g. 1,3 (the student's)."
    ),
    threads: int = typer.Option(None, "--threads", help="Runtime intra-op threads."),
    batch: int = typer.Option(None, "--batch", help="Static batch size."),
    ops: str = typer.Option(
        None, "--ops", help="A primitive set (auto-reid, auto-reid+dense) or comma-separated ops."
    ),
    teacher: str = typer.Option(
        None, "--teacher", help="Also time this teacher: resnet18, resnet34, resnet50 or none."
    ),
    repeats: int = typer.Option(None, "--repeats", help="Timed calls per block (median)."),
    warmup: int = typer.Option(None, "--warmup", help="Untimed calls first."),
    fit_networks: int = typer.Option(
        None, "--fit-networks", help="Random networks measured whole to fit the correction."
    ),
    seed: int = typer.Option(None, "--seed"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing table."),
) -> None:
    """Measure a latency table on this machine.

    Times every op, preprocessing block, stem and head of the macro structure on one backend,
    fits the whole-network correction on a few random networks and writes the table."""
    from kdas.export.latency_profile import ProfileConfig, profile_latency

    cfg = ProfileConfig(
        **common.given(
            backend=backend, size=common.parse_size(size), C=channels, layers=layers,
            reduction_positions=common.parse_int_list(reductions), threads=threads,
            batch=batch, ops=common.op_set(ops), teacher=teacher, repeats=repeats, warmup=warmup,
            fit_networks=fit_networks, seed=seed,
        )
    )  # fmt: skip
    table = profile_latency(cfg, out, force=force)
    teacher_ms = f", teacher {table.teacher['ms']:.2f} ms" if table.teacher else ""
    typer.echo(
        f"wrote {out}: {len(table.ops)} op entries, {len(table.fixed)} fixed, call overhead "
        f"{table.call_overhead_ms:.3f} ms{teacher_ms}, correction a={table.correction.a:.3f} "
        f"b={table.correction.b:.3f} ms ({table.settings.get('seconds')} s)"
    )


@app.command("validate")
def validate_command(
    table: Path = typer.Option(..., "--table", help="A latency table (kdas latency profile)."),
    count: int = typer.Option(None, "--count", help="Random networks to measure."),
    seed: int = typer.Option(None, "--seed", help="Seed of the random networks."),
    out: Path = typer.Option(None, "--out", help="Write the report (JSON) here."),
    allow_foreign_lut: bool = typer.Option(
        False, "--allow-foreign-lut", help="Accept a table measured on another machine kind."
    ),
) -> None:
    """Check a latency table against whole networks measured now.

    Predicted against measured latency of random networks: Spearman rank correlation and
    median error, for the raw sum and the corrected prediction."""
    from kdas.export.latency_profile import render_validation, validate_predictor
    from kdas.models.latency_table import load_latency_table

    report = validate_predictor(
        load_latency_table(table), allow_foreign=allow_foreign_lut, out=out,
        **common.given(count=count, seed=seed),
    )  # fmt: skip
    render_validation(report)
    if out is not None:
        typer.echo(f"report -> {out}")
