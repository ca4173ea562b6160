"""`kdas eval` and `kdas info`: what a trained model scores and what it is."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


@common.with_options(common.DataSetOptions)
def eval_command(
    *,
    shared: common.DataSetOptions,
    model_dir: Path = typer.Argument(..., help="A model folder (teacher or student)."),
    out: Path = typer.Option(
        None, "--out", help="Where to write results (default MODEL_DIR/eval)."
    ),
    rerank: bool = typer.Option(False, "--rerank", help="k-reciprocal re-ranking."),
    flip: bool = typer.Option(False, "--flip", help="Average with the flipped image's feature."),
    precision: str = typer.Option(None, "--precision", help=common.PRECISION_HELP),
    batch_size: int = typer.Option(None, "--batch-size"),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
) -> None:
    """Rank-1/5/10, mAP and mINP of a model; writes metrics.json, a rank list and a CMC plot."""
    from kdas.engine.evaluate import evaluate_artifact

    result = evaluate_artifact(
        model_dir,
        shared.data,
        out_dir=out,
        options=shared.layout_options() or {},
        rerank=rerank,
        flip=flip,
        **common.given(
            layout=shared.layout, precision=precision, batch_size=batch_size, device=device
        ),
    )
    m = result["metrics"]
    typer.echo(
        f"rank-1 {m['rank1']:.4f}  rank-5 {m['rank5']:.4f}  rank-10 {m['rank10']:.4f}  "
        f"mAP {m['mAP']:.4f}  mINP {m['mINP']:.4f}  ({result['num_query']} queries, "
        f"{result['num_gallery']} gallery) -> {result['out_dir']}"
    )


def info_command(model_dir: Path = typer.Argument(..., help="A model folder.")) -> None:
    """Parameters, FLOPs, genotype and training recipe of a model folder."""
    from kdas.engine.info import describe_model, render_model_info

    render_model_info(describe_model(model_dir))
