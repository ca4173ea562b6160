"""What `kdas index ...` does, as functions tests and scripts can call: build, add, query, eval.

Each function takes plain records (path, pid, camid) so the runtime stays independent of the
data set readers; the CLI turns a folder or a data set layout into records first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdas.constants import DEFAULT_LAYOUT
from kdas.errors import KdasError
from kdas.runtime.embedder import DEFAULT_BATCH_SIZE, Embedder, EmbedderChoice, ProgressCallback
from kdas.runtime.faiss_backend import DEFAULT_DEVICE, DEFAULT_INDEX_TYPE, IndexParams
from kdas.runtime.index import DEFAULT_K, GalleryIndex, SearchHit
from kdas.runtime.index_persistence import check_target
from kdas.runtime.manifest import check_model, read_manifest
from kdas.runtime.metadata import as_record

EVAL_DEPTH = 100  # hits taken from an approximate index when it is evaluated


def open_with_embedder(
    index_dir: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | None = None,
    choice: EmbedderChoice | None = None,
    device: str = DEFAULT_DEVICE,
) -> tuple[GalleryIndex, Embedder]:
    """The index and an embedder for its model (the copy inside the folder unless given, e.g.
    a TensorRT engine of the same weights); a different model is refused."""
    folder = Path(index_dir)
    manifest = read_manifest(folder)
    if model_path is None:
        if manifest.model_file is None:
            raise KdasError(f"index {folder} holds no model file: pass the model with --model")
        model_path = folder / manifest.model_file
    embedder = (choice or EmbedderChoice()).open(model_path)
    check_model(manifest, embedder.info, folder)
    return GalleryIndex.open(folder, expected_model=embedder.info, device=device), embedder


def build_index(
    model_path: str | os.PathLike[str],
    records: Sequence[Any],
    out_dir: str | os.PathLike[str],
    index_type: str = DEFAULT_INDEX_TYPE,
    params: IndexParams | dict[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    choice: EmbedderChoice | None = None,
    device: str = DEFAULT_DEVICE,
    progress: ProgressCallback | None = None,
) -> GalleryIndex:
    """Embed every gallery image with the model and save a self-contained index folder."""
    check_target(Path(out_dir))  # before the embedding, not after it
    recs = [as_record(r) for r in records]
    if not recs:
        raise KdasError("the gallery is empty: nothing to index")
    embedder = (choice or EmbedderChoice()).open(model_path)
    embeddings = embedder.embed_images([r.path for r in recs], batch_size, progress=progress)
    index = GalleryIndex.build(
        embeddings, recs, embedder.info, index_type, params, device=device, model_path=model_path
    )
    index.save(out_dir)
    return index


def add_to_index(
    index_dir: str | os.PathLike[str],
    records: Sequence[Any],
    batch_size: int = DEFAULT_BATCH_SIZE,
    choice: EmbedderChoice | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Embed and add images to an existing index; saved atomically. Returns the new ids."""
    index, embedder = open_with_embedder(index_dir, choice=choice)
    recs = [as_record(r) for r in records]
    embeddings = embedder.embed_images([r.path for r in recs], batch_size, progress=progress)
    ids = index.add(embeddings, recs)
    index.save()
    return ids


def remove_from_index(
    index_dir: str | os.PathLike[str], ids: Sequence[int], compact: bool = False
) -> tuple[int, int]:
    """Remove gallery ids (all or none) and save atomically; `compact` rebuilds an HNSW graph
    without its tombstones. Returns (removed, vectors still stored)."""
    index = GalleryIndex.open(index_dir)
    removed = index.remove(ids)
    if compact:
        index.compact()
    index.save()
    return removed, index.stored_vectors


def compact_index(index_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """Rebuild an index from its live vectors (HNSW keeps removed ones as tombstones until
    then); saved atomically. Returns (stored vectors before, after)."""
    index = GalleryIndex.open(index_dir)
    before = index.stored_vectors
    index.compact()
    index.save()
    return before, index.stored_vectors


@dataclass
class QueryResult:
    image: str
    hits: list[SearchHit]


def query_index(
    index_dir: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    k: int = DEFAULT_K,
    query_camids: Sequence[int] | None = None,
    exclude_same_camera: bool = False,
    rerank: bool = False,
    choice: EmbedderChoice | None = None,
) -> list[QueryResult]:
    index, embedder = open_with_embedder(index_dir, choice=choice)
    embeddings = embedder.embed_images([str(p) for p in images])
    hits = index.search(
        embeddings, k, query_camids=query_camids, exclude_same_camera=exclude_same_camera,
        rerank=rerank,
    )  # fmt: skip
    return [QueryResult(str(p), h) for p, h in zip(images, hits, strict=True)]


def evaluate_index(
    index: GalleryIndex,
    embedder: Embedder,
    query_records: Sequence[Any],
    batch_size: int = DEFAULT_BATCH_SIZE,
    depth: int = EVAL_DEPTH,
    max_rank: int = 50,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Market-protocol metrics of the index's answers to the query split.

    A flat index is exact, so the full distance matrix is computed from its stored vectors and
    the numbers equal `kdas eval` of the same model on the same split. An approximate index is
    judged on what it returns: its top `depth` hits in its order, every other gallery image
    after them (so mAP counts matches the index missed as found last).
    """
    from kdas.evaluation.distances import compute_distance_matrix
    from kdas.evaluation.metrics import evaluate_rank

    queries = [as_record(r) for r in query_records]
    if not queries:
        raise KdasError("the query split is empty: nothing to evaluate")
    if embedder.info.weights_sha256 != index.info.weights_sha256:
        raise KdasError("the embedder's model is not the model that built this index")
    start = time.perf_counter()
    q = embedder.embed_images([r.path for r in queries], batch_size, progress=progress)
    embed_s = time.perf_counter() - start
    ids, records = index.records()
    g_pids = np.array([r.pid for r in records], np.int64)
    g_cams = np.array([r.camid for r in records], np.int64)
    start = time.perf_counter()
    if index.index_type == "flat":
        stored_ids, vectors = index.embeddings()
        if not np.array_equal(stored_ids, ids):
            raise KdasError("the index changed while it was evaluated: try again")
        distmat = compute_distance_matrix(q, vectors, "cosine")  # what `kdas eval` uses
        mode = "exact (full distance matrix)"
    else:
        scores, hit_ids = index.search_ids(q, min(depth, len(ids)))
        distmat = np.full((len(q), len(ids)), 3.0, dtype=np.float32)  # beyond any cosine distance
        rows = np.searchsorted(ids, np.maximum(hit_ids, 0))
        valid = hit_ids >= 0
        qi = np.repeat(np.arange(len(q)), hit_ids.shape[1]).reshape(hit_ids.shape)
        distmat[qi[valid], rows[valid]] = 1.0 - scores[valid]
        mode = f"approximate (top {hit_ids.shape[1]} from the {index.index_type} index)"
    result = evaluate_rank(
        distmat,
        np.array([r.pid for r in queries], np.int64),
        g_pids,
        np.array([r.camid for r in queries], np.int64),
        g_cams,
        max_rank=max_rank,
    )
    search_s = time.perf_counter() - start
    return {
        "metrics": result.to_dict(),
        "cmc": [float(v) for v in result.cmc],
        "num_query": len(queries),
        "num_valid_queries": result.num_valid_queries,
        "num_gallery": len(ids),
        "index_type": index.index_type,
        "mode": mode,
        "embed_seconds": embed_s,
        "search_seconds": search_s,
    }


def evaluate_index_on_dataset(
    index_dir: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    layout: str = DEFAULT_LAYOUT,
    options: dict[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    depth: int = EVAL_DEPTH,
    out: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    choice: EmbedderChoice | None = None,
) -> dict[str, Any]:
    """`kdas index eval`: the index answers a data set's query split with its own model;
    written as JSON to `out` when given."""
    from kdas.data.layouts import load_dataset  # layouts import no torch
    from kdas.utils.atomic import atomic_write_json
    from kdas.utils.outputs import check_out_file

    if out is not None:
        check_out_file(out, example="metrics.json")  # before the embedding, not after it
    splits = load_dataset(data_root, layout, **(options or {}))
    index, embedder = open_with_embedder(index_dir, choice=choice)
    result = evaluate_index(
        index, embedder, splits.query, batch_size=batch_size, depth=depth, progress=progress
    )
    if out is not None:
        atomic_write_json(out, result)
    return result
