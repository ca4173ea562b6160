"""`kdas data ...`: synthesise and inspect data sets."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from kdas.cli import common
from kdas.errors import KdasError

app = typer.Typer(no_args_is_help=True)

LAYOUT_HELP = common.LAYOUT_HELP


@app.command("inspect")
def inspect_command(
    root: Path = typer.Argument(..., help="Data set root folder."),
    layout: str = typer.Option(None, "--layout", "-l", help=LAYOUT_HELP),
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    include_distractors: bool = common.DistractorsOption,
) -> None:
    """Load a data set and print its ids, images and cameras per split, and its warnings."""
    from rich.console import Console
    from rich.table import Table

    from kdas.data.inspect import summarize
    from kdas.data.layouts import load_dataset

    options = common.layout_options(variant, merge_val, include_distractors) or {}
    splits = load_dataset(root, **common.given(layout=layout), **options)
    summary = summarize(splits)
    table = Table(title=f"{summary['name']}  ({summary['root']})")
    for column in ("split", "ids", "images", "cameras", "distractors"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, row in summary["splits"].items():
        table.add_row(name, *(str(row[c]) for c in ("ids", "images", "cameras", "distractors")))
    console = Console()
    console.print(table)
    console.print(
        f"classes: {summary['num_classes']}   cameras: {summary['cameras']}   "
        f"query ids in gallery: {summary['query_ids_in_gallery']}   "
        f"gallery-only ids: {summary['gallery_only_ids']}"
    )
    if summary["dropped"]:
        dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items())
        console.print(f"left out: {dropped}")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@app.command("synth")
def synth_command(
    out: Path = typer.Argument(..., help="Output folder: new, empty, or an earlier synthetic set."),
    ids: int = typer.Option(None, help="Identities (half train, half test)."),
    cameras: int | None = typer.Option(None, help="Cameras (6 if not given; cuhk03: 2)."),
    images_per_camera: int = typer.Option(None, help="Pictures of each identity per camera."),
    size: str = typer.Option(None, help="Image size, height x width."),
    seed: int = typer.Option(None, help="Random seed: the same seed writes the same files."),
    layout: str = typer.Option(
        None, "--layout", "-l", help="market1501 (default), dukemtmc, cuhk03 or msmt17."
    ),
) -> None:
    """Write a synthetic pedestrian data set in a real data set's exact layout."""
    from kdas.data.synthetic import SynthConfig, synthesize
    from kdas.data.synthetic.config import LAYOUT_MAX_CAMERAS
    from kdas.utils.config import from_dict

    if layout is not None and layout not in LAYOUT_MAX_CAMERAS:
        raise KdasError(f"--layout must be one of {', '.join(LAYOUT_MAX_CAMERAS)}, got {layout!r}")
    config = from_dict(
        SynthConfig,
        common.given(
            ids=ids, cameras=cameras, images_per_camera=images_per_camera,
            size=common.parse_size(size), seed=seed, layout=layout,
        ),
        where="kdas data synth",
    )  # fmt: skip
    root = synthesize(out, config, progress=True)
    summary = _written(root)
    typer.echo(f"wrote a synthetic {config.layout} data set to {root}: {summary}")
    command = ["kdas", "data", "inspect", str(root), "--layout", config.layout]
    if config.layout == "cuhk03":
        command += ["--variant", "labeled"]
    typer.echo(f"inspect it with: {shlex.join(command)}")


def _written(root: Path) -> str:
    import json

    from kdas.files import SYNTH_CONFIG_FILE

    info = json.loads((root / SYNTH_CONFIG_FILE).read_text(encoding="utf-8"))
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in info["counts"].items())
    return f"{info['data_folder']}/ with {counts} images, {info['cameras']} cameras"
