"""Pictures of an evaluation: rank lists (what the model retrieves) and CMC curves.

Rank lists are drawn by kdas.evaluation.rank_picture (PIL, shared with the runtime). Figures are
drawn on `matplotlib.figure.Figure` (rendered by the Agg canvas) rather than through pyplot, so
no global backend or figure registry is touched by a library call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kdas.constants import DISTRACTOR_PID, JUNK_PID
from kdas.data.records import ImageRecord
from kdas.errors import KdasError
from kdas.evaluation._arrays import as_float_matrix
from kdas.evaluation.rank_picture import MATCH, QUERY, WRONG, Tile, draw_rank_rows
from kdas.utils.atomic import atomic_output_path


def _save(fig: Figure, out_png: str | os.PathLike[str], dpi: int) -> Path:
    FigureCanvasAgg(fig)
    with atomic_output_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(out_png)


def ranked_gallery(
    distances: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray
) -> np.ndarray:
    """Gallery indices by increasing distance (ties by index), without the items the protocol
    ignores for this query: same identity and same camera, and junk."""
    order = np.argsort(distances, kind="stable")
    pids, cams = g_pids[order], g_camids[order]
    ignored = ((pids == q_pid) & (cams == q_camid)) | (pids == JUNK_PID)
    return order[~ignored]


def _is_match(query: ImageRecord, item: ImageRecord) -> bool:
    return item.pid == query.pid and item.pid not in (JUNK_PID, DISTRACTOR_PID)


def _queries_with_match(query_records, gallery_records) -> list[int]:
    cams: dict[int, set[int]] = {}
    for r in gallery_records:
        cams.setdefault(r.pid, set()).add(r.camid)
    return [
        i
        for i, q in enumerate(query_records)
        if q.pid not in (JUNK_PID, DISTRACTOR_PID) and cams.get(q.pid, set()) - {q.camid}
    ]


def plot_rank_list(
    distmat: Any,
    query_records: Sequence[ImageRecord],
    gallery_records: Sequence[ImageRecord],
    out_png: str | os.PathLike[str],
    num_queries: int = 8,
    topk: int = 10,
    seed: int = 0,
) -> Path:
    """A grid PNG: per row a query, then its top-k gallery images framed green (same identity)
    or red (wrong). Queries are drawn at random (seeded) among those with a true match."""
    dist = as_float_matrix(distmat, "distmat")
    if dist.shape != (len(query_records), len(gallery_records)):
        raise KdasError(
            f"distmat is {dist.shape[0]} x {dist.shape[1]} but there are {len(query_records)} "
            f"query and {len(gallery_records)} gallery records"
        )
    if num_queries < 1 or topk < 1:
        raise KdasError(f"num_queries and topk must be positive, got {num_queries}, {topk}")
    pool = _queries_with_match(query_records, gallery_records) or list(range(len(dist)))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(pool, size=min(num_queries, len(pool)), replace=False).tolist())
    g_pids = np.array([r.pid for r in gallery_records])
    g_cams = np.array([r.camid for r in gallery_records])
    rows = []
    for qi in chosen:
        query = query_records[qi]
        ranked = ranked_gallery(dist[qi], query.pid, query.camid, g_pids, g_cams)[:topk]
        row = [Tile(query.path, f"query\npid {query.pid} cam {query.camid + 1}", QUERY)]
        for rank, gi in enumerate(ranked.tolist(), start=1):
            item = gallery_records[gi]
            color = MATCH if _is_match(query, item) else WRONG
            row.append(Tile(item.path, f"#{rank}  {dist[qi, gi]:.3f}\npid {item.pid}", color))
        rows.append(row)
    title = "Rank lists (green: same identity, red: wrong)"
    return draw_rank_rows(rows, topk + 1, title, out_png)


def plot_cmc(
    curves: Mapping[str, Any], out_png: str | os.PathLike[str], max_rank: int = 20
) -> Path:
    """CMC curves of several models on one plot, rank-1 in each legend entry."""
    if not curves:
        raise KdasError("plot_cmc needs at least one curve")
    fig = Figure(figsize=(6, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, curve in curves.items():
        values = np.asarray(curve, dtype=np.float64).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise KdasError(f"CMC curve {name!r} is empty or holds NaN/Inf")
        values = values[:max_rank]
        ranks = np.arange(1, len(values) + 1)
        ax.plot(
            ranks,
            100 * values,
            marker="o",
            markersize=3,
            label=f"{name} (R1 {100 * values[0]:.1f}%)",
        )
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100.5)
    ax.set_xlim(1, max_rank)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("CMC")
    fig.tight_layout()
    return _save(fig, out_png, dpi=120)
