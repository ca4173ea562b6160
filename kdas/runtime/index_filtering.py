"""What a gallery search returns beyond FAISS's raw top-k: hits from the query's own camera left
out, HNSW tombstones skipped, k-reciprocal re-ranking of the best candidates, and the hits as
records.

Functions over a `GalleryStore`; the caller (`GalleryIndex`) holds the lock around them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.runtime.index_storage import GalleryStore
from kdas.runtime.metadata import GalleryTable

DEFAULT_K = 10  # hits per query when the caller does not say
# re-ranking parameters a caller may pass, and their types (defaults: kdas.evaluation.rerank)
RERANK_PARAMS = {"k1": int, "k2": int, "lambda_value": float}


@dataclass(frozen=True)
class SearchHit:
    id: int
    score: float  # cosine similarity (inner product of unit vectors)
    path: str
    pid: int
    camid: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_k(k: int) -> None:
    if k < 1:
        raise KdasError(f"k must be >= 1, got {k}")


def query_cameras(query_camids: Any, exclude_same_camera: bool, count: int) -> np.ndarray | None:
    """The camera of each query when same-camera hits are to be left out, else None."""
    if not exclude_same_camera:
        return None
    if query_camids is None:
        raise KdasError("exclude_same_camera needs the camera id of each query")
    cams = np.asarray(query_camids, dtype=np.int64).reshape(-1)
    if len(cams) != count:
        raise KdasError(f"{len(cams)} query camera ids for {count} queries")
    return cams


def empty_hits(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of `queries` rows with no hit yet: -inf and -1, as searches pad them."""
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, np.int64)


def filtered_search(
    store: GalleryStore, queries: np.ndarray, k: int, cams: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of live gallery images, without the query's camera when `cams`.

    Asks FAISS for more than k when filters (camera, HNSW tombstones) may drop hits, and grows
    the request until every query has k hits or the whole index was returned.
    """
    table = store.table
    out_scores, out_ids = empty_hits(len(queries), k)
    stored = store.stored_vectors
    if len(queries) == 0 or stored == 0 or len(table) == 0:
        return out_scores, out_ids
    filtering = cams is not None or stored != len(table)
    kk = min(stored, 2 * k + 16 if filtering else k)
    pending = np.arange(len(queries))
    while len(pending):
        scores, ids = store.raw_search(queries[pending], kk)
        valid = _kept(table, ids, cams[pending] if cams is not None else None)
        done = (valid.sum(axis=1) >= k) | (ids < 0).any(axis=1) | (kk >= stored)
        for local in np.flatnonzero(done):
            keep = np.flatnonzero(valid[local])[:k]
            out_scores[pending[local], : len(keep)] = scores[local, keep]
            out_ids[pending[local], : len(keep)] = ids[local, keep]
        pending = pending[~done]
        kk = min(stored, kk * 4)
    return out_scores, out_ids


def _kept(table: GalleryTable, ids: np.ndarray, cams: np.ndarray | None) -> np.ndarray:
    """Which raw hits count: live ids (no padding, no tombstone), from another camera."""
    rows, valid = table.rows_of(ids)
    valid &= ids >= 0
    if cams is not None:
        valid &= table.camids[rows] != cams[:, None]
    return valid


def rerank_hits(
    store: GalleryStore,
    queries: np.ndarray,
    ids: np.ndarray,
    k: int,
    params: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates `ids` of each query re-ordered by k-reciprocal re-ranking; top k kept.

    Distances are cosine ones, as kdas.evaluation computes them for `kdas eval --rerank`; the
    score stays the cosine similarity so it means the same with and without re-ranking.
    """
    from kdas.evaluation.rerank import rerank as k_reciprocal

    options = {name: kind(params[name]) for name, kind in RERANK_PARAMS.items() if name in params}
    out_scores, out_ids = empty_hits(len(queries), k)
    for q in range(len(queries)):
        cand = ids[q][ids[q] >= 0]
        if len(cand) == 0:
            continue
        vectors = store.vectors_of(cand)
        q_vec = queries[q : q + 1]
        q_g = np.maximum(1.0 - q_vec @ vectors.T, 0.0)
        g_g = np.maximum(1.0 - vectors @ vectors.T, 0.0)
        np.fill_diagonal(g_g, 0.0)  # exactly zero, as the re-ranking expects
        final = k_reciprocal(q_g, np.zeros((1, 1), np.float32), g_g, **options)
        order = np.argsort(np.asarray(final)[0], kind="stable")[:k]
        out_ids[q, : len(order)] = cand[order]
        out_scores[q, : len(order)] = (q_vec @ vectors[order].T)[0]
    return out_scores, out_ids


def as_hits(
    table: GalleryTable, scores: np.ndarray, ids: np.ndarray, k: int
) -> list[list[SearchHit]]:
    """Per query, its first k live hits with their records."""
    results = []
    for row_scores, row_ids in zip(scores, ids, strict=True):
        rows, found = table.rows_of(row_ids)
        hits = [
            SearchHit(int(i), float(s), *table.record(int(r)))
            for s, i, r, f in zip(row_scores, row_ids, rows, found, strict=True)
            if i >= 0 and f
        ]
        results.append(hits[:k])
    return results


def search_hits(
    store: GalleryStore,
    queries: np.ndarray,
    k: int,
    cams: np.ndarray | None,
    rerank: bool,
    rerank_candidates: int,
    rerank_params: dict[str, float] | None,
) -> list[list[SearchHit]]:
    """Search, optionally re-rank, and look the hits up: one pass under the caller's lock (a
    concurrent removal must not land between them; re-ranking reads the vectors back)."""
    depth = max(k, rerank_candidates) if rerank else k
    scores, ids = filtered_search(store, queries, depth, cams)
    if rerank:
        scores, ids = rerank_hits(store, queries, ids, k, rerank_params or {})
    return as_hits(store.table, scores, ids, k)
