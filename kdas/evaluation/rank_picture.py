"""The rank-list picture: per row a query, then its ranked gallery images, each framed in a
colour that says whether it is the query's identity. One drawing for `kdas eval`'s rank lists
(kdas.evaluation.plots) and `kdas index query --picture` (kdas.runtime.picture).

PIL only, so the torch-free runtime draws it too. Sizes are (height, width), as everywhere in
kdas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from kdas.errors import KdasError
from kdas.images import read_image
from kdas.utils.atomic import atomic_output_path

MATCH = (46, 160, 67)  # green: the query's identity
WRONG = (211, 47, 47)  # red: another identity
QUERY = (40, 40, 40)  # the query itself
UNKNOWN = (150, 150, 150)  # grey: the query's identity is not known
MISSING = (90, 90, 90)  # fill of an image file that is gone

CELL = (220, 110)  # (height, width) of one tile: framed thumbnail and a two-line caption
THUMB = (160, 80)  # (height, width) every image is resized to: the usual 1:2 person crop
BORDER = 4  # frame width
TITLE = 40  # height of the title band
FONT_SIZE = 11


@dataclass(frozen=True)
class Tile:
    """One image of a rank list; `required=False` draws a grey box when the file is gone."""

    path: str
    caption: str
    color: tuple[int, int, int]
    required: bool = True


@cache
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _thumbnail(tile: Tile) -> Image.Image:
    height, width = THUMB
    try:
        image = read_image(tile.path).resize((width, height), Image.Resampling.BILINEAR)
    except KdasError:
        if tile.required:
            raise
        image = Image.new("RGB", (width, height), MISSING)
    return ImageOps.expand(image, border=BORDER, fill=tile.color)


def draw_rank_rows(
    rows: Sequence[Sequence[Tile]], columns: int, title: str, out: str | os.PathLike[str]
) -> Path:
    """A PNG of `len(rows)` rows by `columns` tiles (rows may be shorter) under a title.

    The picture is (TITLE + rows * CELL[0], columns * CELL[1]) pixels (height, width).
    """
    if not rows or columns < 1:
        raise KdasError("a rank-list picture needs at least one row and one column")
    cell_h, cell_w = CELL
    canvas = Image.new("RGB", (columns * cell_w, TITLE + len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, TITLE // 2), title, fill="black", font=_font(FONT_SIZE + 3), anchor="lm")
    framed_w = THUMB[1] + 2 * BORDER
    for r, row in enumerate(rows):
        y = TITLE + r * cell_h + 4
        for c, tile in enumerate(row[:columns]):
            x = c * cell_w + (cell_w - framed_w) // 2
            thumb = _thumbnail(tile)
            canvas.paste(thumb, (x, y))
            caption_at = (x, y + thumb.height + 4)
            draw.multiline_text(caption_at, tile.caption, fill="black", font=_font(FONT_SIZE))
    out = Path(out)
    with atomic_output_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out
