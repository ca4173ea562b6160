"""A query and its top-k gallery hits side by side, as one PNG a person can check at a glance.

Drawn by kdas.evaluation.rank_picture (PIL only), the same picture as `kdas eval`'s rank lists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kdas.errors import KdasError
from kdas.evaluation.rank_picture import MATCH, QUERY, UNKNOWN, WRONG, Tile, draw_rank_rows
from kdas.runtime.index import SearchHit

TITLE = "Hits (green: the query's identity, red: another)"


def _hit_tile(hit: SearchHit, query_pid: int | None) -> Tile:
    color = UNKNOWN if query_pid is None else (MATCH if hit.pid == query_pid else WRONG)
    caption = f"{hit.score:.3f}\nid {hit.pid} c{hit.camid + 1}"
    return Tile(hit.path, caption, color, required=False)  # a moved gallery file: grey box


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
    rows = []
    for row, (query, hits) in enumerate(zip(query_images, results, strict=True)):
        qpid = query_pids[row] if query_pids is not None else None
        caption = "query" if qpid is None else f"query\nid {qpid}"
        rows.append([Tile(str(query), caption, QUERY), *(_hit_tile(h, qpid) for h in hits)])
    k = max((len(r) for r in results), default=0)
    return draw_rank_rows(rows, k + 1, TITLE, out)
