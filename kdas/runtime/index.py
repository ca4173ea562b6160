"""The gallery index: FAISS vectors + SQLite records + a manifest, saved as one atomic folder.

Layout of an index folder:

    manifest.json   model identity (EmbeddingModelInfo), index type/params, counts, checksums
    index.faiss     the FAISS index, vectors keyed by 64-bit gallery ids
    gallery.sqlite  id, path, pid, camid, added
    model.onnx      the embedding model, so the folder is all a service needs

Searches run concurrently under a read lock; add/remove take the write lock. Saving builds the
whole folder in a temp sibling and swaps it in, so a crash leaves the previous index intact.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.runtime import faiss_backend as fb
from kdas.runtime.exact import exact_topk
from kdas.runtime.manifest import (
    INDEX_FILE,
    METADATA_FILE,
    MODEL_FILE,
    IndexManifest,
    check_model,
    now_iso,
    read_manifest,
)
from kdas.runtime.metadata import GalleryRecord, GalleryTable, as_record, read_sqlite, write_sqlite
from kdas.runtime.model_meta import EmbeddingModelInfo
from kdas.runtime.rwlock import ReadWriteLock
from kdas.utils.atomic import atomic_directory, atomic_write_json
from kdas.utils.hashing import sha256_file


class UnknownIds(KdasError):
    """Removing ids the gallery does not hold (the service answers 404)."""


@dataclass(frozen=True)
class SearchHit:
    id: int
    score: float  # cosine similarity (inner product of unit vectors)
    path: str
    pid: int
    camid: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_rows(x: np.ndarray, what: str, dim: int) -> np.ndarray:
    """Unit rows, float32, C-contiguous: inner product is then cosine similarity."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise KdasError(f"{what} have shape {x.shape}, expected (N, {dim})")
    if not np.isfinite(x).all():
        raise KdasError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if len(x) and float(norms.min()) < 1e-12:
        raise KdasError(f"{what} contain an all-zero vector, which has no direction to search by")
    if len(x) and float(np.abs(norms - 1.0).max()) < 1e-5:  # already unit rows: no 2 GB copy
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x / norms)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link an unchanged file into the new folder (free), copy across filesystems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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
        device: str = "auto",
        created: str | None = None,
        updated: str | None = None,
        model_path: Path | None = None,
        path: Path | None = None,
    ) -> None:
        self.info = info
        self.index_type = index_type
        self.params = params
        self._index = faiss_index
        self._table = table
        self._next_id = next_id
        self.created = created or now_iso()
        self.updated = updated or self.created
        self.model_path = model_path
        self.path = path
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()
        self.device = fb.resolve_device(device, index_type)
        self._gpu = fb.GpuMirror() if self.device == "gpu" else None
        self._search_index = self._mirror(faiss_index)
        self._refresh_flat_view()

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        records: Sequence[Any],
        info: EmbeddingModelInfo,
        index_type: str = "flat",
        params: fb.IndexParams | dict[str, Any] | None = None,
        device: str = "auto",
        model_path: str | os.PathLike[str] | None = None,
    ) -> GalleryIndex:
        """A new index over `embeddings` (N, D) whose rows are described by `records`."""
        if not isinstance(params, fb.IndexParams):
            params = fb.IndexParams.from_dict(dict(params or {}))
        params.validate(index_type)
        vectors = normalize_rows(embeddings, "gallery embeddings", info.embedding_dim)
        recs = [as_record(r) for r in records]
        if len(recs) != len(vectors):
            raise KdasError(f"{len(vectors)} embeddings but {len(recs)} gallery records")
        if model_path is not None and not Path(model_path).is_file():
            raise KdasError(f"model file {model_path} does not exist")
        faiss_index = fb.new_index(index_type, info.embedding_dim, params, len(vectors))
        if not faiss_index.is_trained:
            fb.train_if_needed(faiss_index, vectors)
        ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
        if len(vectors):
            faiss_index.add_with_ids(vectors, ids)
        table = GalleryTable.empty().append(ids, recs, time.time())
        return cls(
            info, index_type, params, faiss_index, table, next_id=len(vectors) + 1,
            device=device, model_path=Path(model_path) if model_path else None,
        )  # fmt: skip

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        expected_model: EmbeddingModelInfo | None = None,
        device: str = "auto",
        verify: bool = True,
    ) -> GalleryIndex:
        """Load an index folder; refuse one built by a model other than `expected_model`.

        `verify` checks every file against the manifest's sha256, so a flipped byte is caught
        here and not as silently wrong search results.
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        if expected_model is not None:
            check_model(manifest, expected_model, folder)
        for name, meta in manifest.files.items():
            file = folder / name
            if not file.is_file():
                raise KdasError(f"index {folder} is incomplete: {name} is missing; rebuild it")
            if file.stat().st_size != meta.get("bytes") or (
                verify and sha256_file(file) != meta.get("sha256")
            ):
                raise KdasError(
                    f"{file} is corrupt (size or checksum differs from the manifest): "
                    "rebuild the index with `kdas index build`"
                )
        faiss_index = fb.read_index(folder / INDEX_FILE)
        table = read_sqlite(folder / METADATA_FILE)
        if faiss_index.d != manifest.dimension or faiss_index.ntotal != manifest.stored_vectors:
            raise KdasError(
                f"{folder / INDEX_FILE} holds {faiss_index.ntotal} x {faiss_index.d} vectors, the "
                f"manifest says {manifest.stored_vectors} x {manifest.dimension}: rebuild the index"
            )
        if len(table) != manifest.count:
            raise KdasError(
                f"{folder / METADATA_FILE} lists {len(table)} images, the manifest says "
                f"{manifest.count}: rebuild the index"
            )
        params = fb.IndexParams.from_dict(manifest.index_params)
        model_path = folder / manifest.model_file if manifest.model_file else None
        return cls(
            manifest.model, manifest.index_type, params, faiss_index, table, manifest.next_id,
            device=device, created=manifest.created, updated=manifest.updated,
            model_path=model_path, path=folder,
        )  # fmt: skip

    # --- properties -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._table)

    @property
    def dim(self) -> int:
        return self.info.embedding_dim

    @property
    def stored_vectors(self) -> int:
        return int(self._index.ntotal)

    def records(self) -> tuple[np.ndarray, list[GalleryRecord]]:
        """All (ids, records) in id order: a snapshot, safe to use while others write."""
        table = self._table
        return table.ids.copy(), [table.record(i) for i in range(len(table))]

    def get(self, gallery_id: int) -> GalleryRecord | None:
        table = self._table
        rows, found = table.rows_of(np.array([gallery_id]))
        return table.record(int(rows[0])) if found[0] else None

    # --- mutation ---------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, records: Sequence[Any]) -> np.ndarray:
        """Add images; returns their new ids (never reused after a removal)."""
        vectors = normalize_rows(embeddings, "gallery embeddings", self.dim)
        recs = [as_record(r) for r in records]
        if len(recs) != len(vectors):
            raise KdasError(f"{len(vectors)} embeddings but {len(recs)} gallery records")
        with self._lock.write():
            ids = np.arange(self._next_id, self._next_id + len(vectors), dtype=np.int64)
            if len(vectors):
                self._index.add_with_ids(vectors, ids)
                self._table = self._table.append(ids, recs, time.time())
                self._next_id += len(vectors)
                self._mutated()
        return ids

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove gallery ids; unknown ids raise UnknownIds and nothing is removed.

        Flat and IVF indexes drop the vectors; an HNSW graph cannot, so its vectors stay as
        tombstones that search skips until `compact()` rebuilds the graph.
        """
        wanted = np.unique(np.asarray(ids, dtype=np.int64))
        with self._lock.write():
            missing = wanted[~self._table.contains(wanted)]
            if len(missing):
                shown = ", ".join(str(i) for i in missing[:5])
                raise UnknownIds(f"no gallery image with id {shown} in this index")
            if len(wanted) == 0:
                return 0
            if self.index_type != "hnsw":
                self._index.remove_ids(wanted)
            self._table = self._table.without(wanted.tolist())
            self._mutated()
        return len(wanted)

    def compact(self) -> None:
        """Rebuild the index from the live vectors (drops HNSW tombstones)."""
        with self._lock.write():
            ids, vectors = self._live_vectors()
            fresh = fb.new_index(self.index_type, self.dim, self.params, len(ids))
            if not fresh.is_trained:
                fb.train_if_needed(fresh, vectors)
            if len(ids):
                fresh.add_with_ids(vectors, ids)
            self._index = fresh
            self._mutated()

    def _mutated(self) -> None:
        self.updated = now_iso()
        self._search_index = self._mirror(self._index)
        self._refresh_flat_view()

    def _refresh_flat_view(self) -> None:
        """Zero-copy view of a flat index's vectors + their ids, for numpy exact search."""
        view = fb.flat_vectors(self._index) if self.index_type == "flat" else None
        self._flat_view = view
        self._flat_ids = fb.stored_ids(self._index) if view is not None else None

    def _mirror(self, cpu_index: Any) -> Any:
        """The index searches run on: the CPU one, or its GPU copy (refreshed after writes)."""
        if self._gpu is None:
            return cpu_index
        nprobe = self.params.nprobe if self.index_type == "ivf" else None
        return self._gpu.copy(cpu_index, nprobe=nprobe)

    # --- vectors ----------------------------------------------------------------------------
    def _vectors_of(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.empty((0, self.dim), np.float32)
        return np.asarray(self._index.reconstruct_batch(ids), dtype=np.float32)

    def _live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        view = fb.flat_vectors(self._index)
        if view is not None:
            stored = fb.stored_ids(self._index)
            order = np.argsort(stored, kind="stable")
            return stored[order], np.ascontiguousarray(view[order])
        ids = self._table.ids.copy()
        chunks = [self._vectors_of(ids[i : i + 65536]) for i in range(0, len(ids), 65536)]
        vectors = np.concatenate(chunks) if chunks else np.empty((0, self.dim), np.float32)
        return ids, vectors

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live image in id order (a copy; quantised stores are lossy)."""
        with self._lock.read():
            return self._live_vectors()

    # --- search -----------------------------------------------------------------------------
    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = fb.search_parameters(self.index_type, self.params)
        if self.index_type == "flat" and self._gpu is None:
            if self.params.flat_search == "numpy" and self._flat_view is not None:
                scores, rows = exact_topk(queries, self._flat_view, k)
                ids = np.where(rows >= 0, self._flat_ids[np.maximum(rows, 0)], -1)
                return scores, ids
            with fb.blas_for_small_batches():
                return self._search_index.search(queries, k)
        if params is None or self._gpu is not None:
            return self._search_index.search(queries, k)
        return self._search_index.search(queries, k, params=params)

    def _search_lock(self) -> Any:
        """Searches share the index, except on a GPU: faiss GPU indexes and their resources
        do not support concurrent searches, so there they take turns."""
        return self._lock.write() if self._gpu is not None else self._lock.read()

    def _query_cameras(
        self, query_camids: Any, exclude_same_camera: bool, count: int
    ) -> np.ndarray | None:
        if not exclude_same_camera:
            return None
        if query_camids is None:
            raise KdasError("exclude_same_camera needs the camera id of each query")
        cams = np.asarray(query_camids, dtype=np.int64).reshape(-1)
        if len(cams) != count:
            raise KdasError(f"{len(cams)} query camera ids for {count} queries")
        return cams

    def search_ids(
        self,
        query_embeddings: np.ndarray,
        k: int = 10,
        query_camids: Sequence[int] | np.ndarray | None = None,
        exclude_same_camera: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), both (Q, k); rows with fewer hits are padded with -inf / -1."""
        if k < 1:
            raise KdasError(f"k must be >= 1, got {k}")
        queries = normalize_rows(query_embeddings, "query embeddings", self.dim)
        cams = self._query_cameras(query_camids, exclude_same_camera, len(queries))
        with self._search_lock():
            return self._filtered_search(queries, k, cams)

    def _filtered_search(
        self, queries: np.ndarray, k: int, cams: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ask for more than k when filters (camera, HNSW tombstones) may drop hits; grow the
        request until every query has k hits or the whole index was returned."""
        table = self._table
        n_q = len(queries)
        out_scores = np.full((n_q, k), -np.inf, dtype=np.float32)
        out_ids = np.full((n_q, k), -1, dtype=np.int64)
        stored = self.stored_vectors
        if n_q == 0 or stored == 0 or len(table) == 0:
            return out_scores, out_ids
        filtering = cams is not None or stored != len(table)
        kk = min(stored, k if not filtering else 2 * k + 16)
        pending = np.arange(n_q)
        while len(pending):
            scores, ids = self._raw_search(queries[pending], kk)
            rows, valid = table.rows_of(ids)
            valid &= ids >= 0
            if cams is not None:
                valid &= table.camids[rows] != cams[pending][:, None]
            enough = valid.sum(axis=1) >= k
            exhausted = (ids < 0).any(axis=1) | (kk >= stored)
            done = enough | exhausted
            for local in np.flatnonzero(done):
                keep = np.flatnonzero(valid[local])[:k]
                out_scores[pending[local], : len(keep)] = scores[local, keep]
                out_ids[pending[local], : len(keep)] = ids[local, keep]
            pending = pending[~done]
            kk = min(stored, kk * 4)
        return out_scores, out_ids

    def search(
        self,
        query_embeddings: np.ndarray,
        k: int = 10,
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
        if k < 1:
            raise KdasError(f"k must be >= 1, got {k}")
        depth = max(k, rerank_candidates) if rerank else k
        queries = normalize_rows(query_embeddings, "query embeddings", self.dim)
        cams = self._query_cameras(query_camids, exclude_same_camera, len(queries))
        # one lock for search, re-ranking and the record lookup: a concurrent removal must not
        # land between them (re-ranking reads the candidates' vectors back)
        with self._search_lock():
            scores, ids = self._filtered_search(queries, depth, cams)
            if rerank:
                scores, ids = self._rerank(queries, scores, ids, k, rerank_params or {})
            table = self._table
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

    def _rerank(
        self,
        queries: np.ndarray,
        scores: np.ndarray,
        ids: np.ndarray,
        k: int,
        params: dict[str, float],
    ) -> tuple[np.ndarray, np.ndarray]:
        from kdas.evaluation.rerank import rerank as k_reciprocal

        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            cand = ids[q][ids[q] >= 0]
            if len(cand) == 0:
                continue
            vectors = self._vectors_of(cand)
            q_vec = queries[q : q + 1]
            # cosine distances, as kdas.evaluation computes them for `kdas eval --rerank`
            q_g = 1.0 - q_vec @ vectors.T
            q_q = np.zeros((1, 1), np.float32)
            g_g = np.maximum(1.0 - vectors @ vectors.T, 0.0)
            np.fill_diagonal(g_g, 0.0)  # exactly zero, as the re-ranking expects
            final = k_reciprocal(
                np.maximum(q_g, 0.0), q_q, g_g,
                k1=int(params.get("k1", 20)), k2=int(params.get("k2", 6)),
                lambda_value=float(params.get("lambda_value", 0.3)),
            )  # fmt: skip
            order = np.argsort(np.asarray(final)[0], kind="stable")[:k]
            out_ids[q, : len(order)] = cand[order]
            out_scores[q, : len(order)] = (q_vec @ vectors[order].T)[0]
        return out_scores, out_ids

    # --- persistence ------------------------------------------------------------------------
    def manifest(self) -> IndexManifest:
        return IndexManifest(
            model=self.info,
            index_type=self.index_type,
            index_params=self.params.to_dict(),
            dimension=self.dim,
            count=len(self._table),
            stored_vectors=self.stored_vectors,
            next_id=self._next_id,
            model_file=MODEL_FILE if self.model_path is not None else None,
            created=self.created,
            updated=self.updated,
        )

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the whole folder atomically (temp folder, fsync, swap); returns its path."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise KdasError("this index has no folder yet: pass the path to save it to")
        with self._save_lock, self._lock.read():
            manifest = self.manifest()
            with atomic_directory(target) as tmp:
                fb.write_index(self._index, tmp / INDEX_FILE)
                write_sqlite(self._table, tmp / METADATA_FILE)
                names = [INDEX_FILE, METADATA_FILE]
                if self.model_path is not None:
                    if not self.model_path.is_file():
                        raise KdasError(f"the index's model file {self.model_path} is gone")
                    _link_or_copy(self.model_path, tmp / MODEL_FILE)
                    names.append(MODEL_FILE)
                manifest.files = {
                    name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                    for name in names
                }
                atomic_write_json(tmp / "manifest.json", manifest.to_dict())
        self.path = target
        if self.model_path is not None:
            self.model_path = target / MODEL_FILE
        return target

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self._table),
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
