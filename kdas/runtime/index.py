"""The gallery index: FAISS vectors + SQLite records + a manifest, saved as one atomic folder.

`GalleryIndex` is the one object callers use; it validates inputs, holds the locks and hands
the work to three modules:

- `index_storage`: the FAISS index keyed by gallery id, the records table, HNSW tombstones;
- `index_filtering`: camera exclusion, tombstone skipping, re-ranking, hits as records;
- `index_persistence`: the folder on disk (manifest, atomic save, sha256 checks, loading).

Searches run concurrently under a read lock; add/remove take the write lock. Saving builds the
whole folder in a temp sibling and swaps it in, so a crash leaves the previous index intact.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.files import index_model_name
from kdas.runtime import faiss_backend as fb
from kdas.runtime import index_filtering as filtering
from kdas.runtime.index_filtering import DEFAULT_K, SearchHit
from kdas.runtime.index_persistence import read_folder, store_manifest, write_folder
from kdas.runtime.index_storage import (
    GalleryStore,
    UnknownIds,
    check_records,
    initial_contents,
    normalize_rows,
)
from kdas.runtime.manifest import IndexManifest, now_iso
from kdas.runtime.metadata import GalleryRecord, GalleryTable, as_record
from kdas.runtime.model_meta import EmbeddingModelInfo
from kdas.runtime.rwlock import ReadWriteLock

__all__ = ["DEFAULT_K", "GalleryIndex", "SearchHit", "UnknownIds", "normalize_rows"]


class GalleryIndex:
    """Build with `GalleryIndex.build(...)`, load with `GalleryIndex.open(path)`."""

    def __init__(
        self,
        info: EmbeddingModelInfo,
        index_type: str,
        params: fb.IndexParams,
        faiss_index: Any,
        table: GalleryTable,
        next_id: int,
        device: str = fb.DEFAULT_DEVICE,
        created: str | None = None,
        updated: str | None = None,
        model_path: Path | None = None,
        path: Path | None = None,
    ) -> None:
        self.info = info
        self.created = created or now_iso()
        self.updated = updated or self.created
        self.model_path = model_path
        self.path = path
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()
        self._store = GalleryStore(
            index_type, params, info.embedding_dim, faiss_index, table, next_id, device
        )
        # fixed for the index's life; `params` is the store's own object, so changing nprobe or
        # ef_search on it changes how the index searches
        self.index_type = self._store.index_type
        self.params = self._store.params
        self.device = self._store.device  # "auto" resolved to "cpu" or "gpu"

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        records: Sequence[Any],
        info: EmbeddingModelInfo,
        index_type: str = fb.DEFAULT_INDEX_TYPE,
        params: fb.IndexParams | dict[str, Any] | None = None,
        device: str = fb.DEFAULT_DEVICE,
        model_path: str | os.PathLike[str] | None = None,
    ) -> GalleryIndex:
        """A new index over `embeddings` (N, D) whose rows are described by `records`."""
        if not isinstance(params, fb.IndexParams):
            params = fb.IndexParams.from_dict(dict(params or {}))
        params.validate(index_type)
        vectors = normalize_rows(embeddings, "gallery embeddings", info.embedding_dim)
        recs = [as_record(r) for r in records]
        check_records(vectors, recs)
        if model_path is not None and not Path(model_path).is_file():
            raise KdasError(f"model file {model_path} does not exist")
        faiss_index, table = initial_contents(index_type, params, info.embedding_dim, vectors, recs)
        return cls(
            info, index_type, params, faiss_index, table, next_id=len(vectors) + 1,
            device=device, model_path=Path(model_path) if model_path else None,
        )  # fmt: skip

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        expected_model: EmbeddingModelInfo | None = None,
        device: str = fb.DEFAULT_DEVICE,
        verify: bool = True,
    ) -> GalleryIndex:
        """Load an index folder; refuse one built by a model other than `expected_model`.

        `verify` checks every file against the manifest's sha256, so a flipped byte is caught
        here and not as silently wrong search results.
        """
        folder = Path(path)
        manifest, faiss_index, table = read_folder(folder, expected_model, verify)
        params = fb.IndexParams.from_dict(manifest.index_params)
        model_path = folder / manifest.model_file if manifest.model_file else None
        return cls(
            manifest.model, manifest.index_type, params, faiss_index, table, manifest.next_id,
            device=device, created=manifest.created, updated=manifest.updated,
            model_path=model_path, path=folder,
        )  # fmt: skip

    # --- properties -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._store.table)

    @property
    def dim(self) -> int:
        return self.info.embedding_dim

    @property
    def stored_vectors(self) -> int:
        return self._store.stored_vectors

    @property
    def _index(self) -> Any:
        """The CPU FAISS index (benchmarks read its vectors)."""
        return self._store.faiss_index

    def records(self) -> tuple[np.ndarray, list[GalleryRecord]]:
        """All (ids, records) in id order: a snapshot, safe to use while others write."""
        table = self._store.table
        return table.ids.copy(), [table.record(i) for i in range(len(table))]

    def get(self, gallery_id: int) -> GalleryRecord | None:
        table = self._store.table
        rows, found = table.rows_of(np.array([gallery_id]))
        return table.record(int(rows[0])) if found[0] else None

    # --- mutation ---------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, records: Sequence[Any]) -> np.ndarray:
        """Add images; returns their new ids (never reused after a removal)."""
        vectors = normalize_rows(embeddings, "gallery embeddings", self.dim)
        recs = [as_record(r) for r in records]
        check_records(vectors, recs)
        with self._lock.write():
            ids = self._store.add(vectors, recs)
            if len(ids):
                self.updated = now_iso()
        return ids

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove gallery ids; unknown ids raise UnknownIds and nothing is removed.

        Flat and IVF indexes drop the vectors; an HNSW graph cannot, so its vectors stay as
        tombstones that search skips until `compact()` rebuilds the graph.
        """
        with self._lock.write():
            removed = self._store.remove(ids)
            if removed:
                self.updated = now_iso()
        return removed

    def compact(self) -> None:
        """Rebuild the index from the live vectors (drops HNSW tombstones)."""
        with self._lock.write():
            self._store.compact()
            self.updated = now_iso()

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live image in id order (a copy; quantised stores are lossy)."""
        with self._lock.read():
            return self._store.live_vectors()

    # --- search -----------------------------------------------------------------------------
    def _search_lock(self) -> Any:
        """Searches share the index, except on a GPU: faiss GPU indexes and their resources
        do not support concurrent searches, so there they take turns."""
        return self._lock.write() if self._store.on_gpu else self._lock.read()

    def _queries(
        self, query_embeddings: np.ndarray, k: int, query_camids: Any, exclude_same_camera: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Checked unit-row queries and, when same-camera hits are excluded, their cameras."""
        filtering.check_k(k)
        queries = normalize_rows(query_embeddings, "query embeddings", self.dim)
        return queries, filtering.query_cameras(query_camids, exclude_same_camera, len(queries))

    def search_ids(
        self,
        query_embeddings: np.ndarray,
        k: int = DEFAULT_K,
        query_camids: Sequence[int] | np.ndarray | None = None,
        exclude_same_camera: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), both (Q, k); rows with fewer hits are padded with -inf / -1."""
        queries, cams = self._queries(query_embeddings, k, query_camids, exclude_same_camera)
        with self._search_lock():
            return filtering.filtered_search(self._store, queries, k, cams)

    def search(
        self,
        query_embeddings: np.ndarray,
        k: int = DEFAULT_K,
        query_camids: Sequence[int] | np.ndarray | None = None,
        exclude_same_camera: bool = False,
        rerank: bool = False,
        rerank_candidates: int = 100,
        rerank_params: dict[str, float] | None = None,
    ) -> list[list[SearchHit]]:
        """Top-k gallery hits per query, best first.

        `rerank` re-orders the best `rerank_candidates` hits with k-reciprocal re-ranking
        (kdas.evaluation.rerank) computed among the query and those candidates; `score` stays
        the cosine similarity so it means the same with and without re-ranking.
        """
        queries, cams = self._queries(query_embeddings, k, query_camids, exclude_same_camera)
        # one lock for search, re-ranking and the record lookup: a concurrent removal must not
        # land between them (re-ranking reads the candidates' vectors back)
        with self._search_lock():
            return filtering.search_hits(
                self._store, queries, k, cams, rerank, rerank_candidates, rerank_params
            )

    # --- persistence ------------------------------------------------------------------------
    def manifest(self) -> IndexManifest:
        return store_manifest(self._store, self.info, self.model_path, self.created, self.updated)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the whole folder atomically (temp folder, fsync, swap); returns its path."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise KdasError("this index has no folder yet: pass the path to save it to")
        with self._save_lock, self._lock.read():
            write_folder(target, self._store, self.manifest(), self.model_path)
        self.path = target
        if self.model_path is not None:
            self.model_path = target / index_model_name(self.model_path)
        return target

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self),
            "stored_vectors": self.stored_vectors,
            "dimension": self.dim,
            "index_type": self.index_type,
            "index_params": self.params.to_dict(),
            "device": self.device,
            "model_sha256": self.info.weights_sha256,
            "model_kind": self.info.model_kind,
            "created": self.created,
            "updated": self.updated,
        }
