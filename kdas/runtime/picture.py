"""A query and its top-k gallery hits side by side, as one PNG a person can check at a glance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from kdas.errors import KdasError
from kdas.runtime.index import SearchHit
from kdas.runtime.preprocess import load_image
from kdas.utils.atomic import atomic_output_path

THUMB = (64, 128)  # width, height: the usual 1:2 person crop
CAPTION = 30
GAP = 6
MATCH, MISS, NEUTRAL = (40, 160, 60), (200, 50, 50), (150, 150, 150)


def _thumb(path: str) -> Image.Image:
    try:
        image = load_image(path)
    except KdasError:  # a gallery file moved away: show a grey box, not an error
        return Image.new("RGB", THUMB, (90, 90, 90))
    return image.resize(THUMB, Image.Resampling.BILINEAR)


def query_picture(
    query_images: Sequence[str | os.PathLike[str]],
    results: Sequence[Sequence[SearchHit]],
    out: str | os.PathLike[str],
    query_pids: Sequence[int | None] | None = None,
) -> Path:
    """One row per query: the query, then its hits with score, pid and camera.

    With known query pids, a hit's frame is green for the same identity and red otherwise.
    """
    if len(query_images) != len(results):
        raise KdasError(f"{len(query_images)} query images but {len(results)} result lists")
    k = max((len(r) for r in results), default=0)
    cell_w, cell_h = THUMB[0] + GAP, THUMB[1] + CAPTION + GAP
    canvas = Image.new("RGB", (GAP + cell_w * (k + 1) + GAP, GAP + cell_h * len(results)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for row, (query, hits) in enumerate(zip(query_images, results, strict=True)):
        y = GAP + row * cell_h
        canvas.paste(load_image(query).resize(THUMB, Image.Resampling.BILINEAR), (GAP, y))
        draw.rectangle([GAP - 2, y - 2, GAP + THUMB[0] + 1, y + THUMB[1] + 1], outline="black")
        draw.text((GAP, y + THUMB[1] + 2), "query", fill="black", font=font)
        qpid = query_pids[row] if query_pids is not None else None
        for col, hit in enumerate(hits, start=1):
            x = GAP + col * cell_w + GAP
            canvas.paste(_thumb(hit.path), (x, y))
            colour = NEUTRAL if qpid is None else (MATCH if hit.pid == qpid else MISS)
            frame = [x - 2, y - 2, x + THUMB[0] + 1, y + THUMB[1] + 1]
            draw.rectangle(frame, outline=colour, width=2)
            caption = f"{hit.score:.3f}\nid {hit.pid} c{hit.camid + 1}"
            draw.multiline_text((x, y + THUMB[1] + 2), caption, fill="black", font=font)
    out = Path(out)
    with atomic_output_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out
