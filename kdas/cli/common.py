"""Option parsing shared by the command groups (sizes, data set options, config overrides)."""

from __future__ import annotations

from typing import Any

import typer

from kdas.errors import KdasError

DATA_HELP = "Data set root folder."
LAYOUT_HELP = "On-disk layout: market1501, dukemtmc, cuhk03, msmt17 or folder."


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256x128' -> (256, 128): height x width, as Re-ID papers write it."""
    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KdasError(f"size {text!r} is not HEIGHTxWIDTH (e.g. 256x128)") from None
    if height < 4 or width < 4:
        raise KdasError(f"size {text!r} is too small (at least 4x4)")
    return height, width


def parse_int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise KdasError(f"{text!r} is not a comma-separated list of integers") from None


def layout_options(
    variant: str | None = None,
    merge_val: bool | None = None,
    include_distractors: bool | None = None,
) -> dict[str, Any] | None:
    """Only the options the user gave, so each layout sees just what it understands."""
    options = {
        "variant": variant,
        "merge_val": merge_val,
        "include_distractors": include_distractors,
    }
    options = {k: v for k, v in options.items() if v is not None}
    return options or None


VariantOption = typer.Option(None, "--variant", help="CUHK03-NP: labeled or detected.")
MergeValOption = typer.Option(
    None, "--merge-val/--no-merge-val", help="MSMT17: merge the val list into train."
)
DistractorsOption = typer.Option(
    None,
    "--include-distractors/--no-distractors",
    help="Market-1501: add the 500k images/ to the gallery.",
)


def is_main_process() -> bool:
    """Under torchrun every rank runs the command; only rank 0 should print results."""
    import os

    return os.environ.get("RANK", "0") == "0"


def data_overrides(
    data: str | None,
    layout: str | None,
    size: str | None = None,
    p: int | None = None,
    k: int | None = None,
    workers: int | None = None,
    variant: str | None = None,
    merge_val: bool | None = None,
    distractors: bool | None = None,
    batches_per_epoch: int | None = None,
) -> dict[str, Any]:
    """The `data` section of a training config from the options every training command has."""
    return {
        "root": data,
        "layout": layout,
        "size": parse_size(size),
        "p": p,
        "k": k,
        "num_workers": workers,
        "batches_per_epoch": batches_per_epoch,
        "options": layout_options(variant, merge_val, distractors),
    }
