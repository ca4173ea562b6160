"""Where a gallery index keeps its vectors: FAISS keyed by 64-bit gallery ids, the records table
beside it, and the tombstones an HNSW graph keeps after a removal.

No locking here: `GalleryIndex` holds its read-write lock around every call, so a store is only
ever changed by one thread while nobody searches it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.evaluation.distances import l2_normalize
from kdas.runtime import faiss_backend as fb
from kdas.runtime.exact import exact_topk
from kdas.runtime.metadata import GalleryRecord, GalleryTable

_READ_BACK_CHUNK = 65536  # vectors reconstructed per FAISS call when reading a store back


class UnknownIds(KdasError):
    """Removing ids the gallery does not hold (the service answers 404)."""


def normalize_rows(x: np.ndarray, what: str, dim: int) -> np.ndarray:
    """Unit rows, float32, C-contiguous: inner product is then cosine similarity.

    The checks come first so the error names the input (`what`) and says what is wrong with it.
    """
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
    return l2_normalize(x)


def check_records(vectors: np.ndarray, records: Sequence[GalleryRecord]) -> None:
    if len(records) != len(vectors):
        raise KdasError(f"{len(vectors)} embeddings but {len(records)} gallery records")


def filled_index(
    index_type: str, dim: int, params: fb.IndexParams, vectors: np.ndarray, ids: np.ndarray
) -> Any:
    """A new FAISS index, trained on `vectors` when its type needs it, holding them as `ids`."""
    index = fb.new_index(index_type, dim, params, len(vectors))
    if not index.is_trained:
        fb.train_if_needed(index, vectors)
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def initial_contents(
    index_type: str,
    params: fb.IndexParams,
    dim: int,
    vectors: np.ndarray,
    records: Sequence[GalleryRecord],
) -> tuple[Any, GalleryTable]:
    """The FAISS index and records table of a new gallery: `vectors` (unit rows) as ids 1..N."""
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    table = GalleryTable.empty().append(ids, records, time.time())
    return filled_index(index_type, dim, params, vectors, ids), table


class GalleryStore:
    """The FAISS index that is saved, the copy searches run on, and the records table.

    On a GPU, searches run on a GPU copy refreshed after every write; the CPU index stays the
    one that is saved. A flat index also exposes its vectors as a zero-copy numpy view, for the
    exact numpy search (`IndexParams.flat_search`).
    """

    def __init__(
        self,
        index_type: str,
        params: fb.IndexParams,
        dim: int,
        faiss_index: Any,
        table: GalleryTable,
        next_id: int,
        device: str = fb.DEFAULT_DEVICE,
    ) -> None:
        self.index_type = index_type
        self.params = params
        self.dim = dim
        self.faiss_index = faiss_index
        self.table = table
        self.next_id = next_id
        self.device = fb.resolve_device(device, index_type)
        self._gpu = fb.GpuMirror() if self.device == "gpu" else None
        self._refresh()

    @property
    def stored_vectors(self) -> int:
        """Live vectors plus the tombstones an HNSW graph still holds."""
        return int(self.faiss_index.ntotal)

    @property
    def on_gpu(self) -> bool:
        return self._gpu is not None

    # --- writes -----------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, records: Sequence[GalleryRecord]) -> np.ndarray:
        """Store unit rows under fresh ids (never reused after a removal); returns the ids."""
        ids = np.arange(self.next_id, self.next_id + len(vectors), dtype=np.int64)
        if len(vectors):
            self.faiss_index.add_with_ids(vectors, ids)
            self.table = self.table.append(ids, records, time.time())
            self.next_id += len(vectors)
            self._refresh()
        return ids

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Drop gallery ids, all or none (UnknownIds); an HNSW graph keeps them as tombstones."""
        wanted = np.unique(np.asarray(ids, dtype=np.int64))
        missing = wanted[~self.table.contains(wanted)]
        if len(missing):
            shown = ", ".join(str(i) for i in missing[:5])
            raise UnknownIds(f"no gallery image with id {shown} in this index")
        if len(wanted) == 0:
            return 0
        if self.index_type != "hnsw":
            self.faiss_index.remove_ids(wanted)
        self.table = self.table.without(wanted.tolist())
        self._refresh()
        return len(wanted)

    def compact(self) -> None:
        """Rebuild the FAISS index from the live vectors (drops HNSW tombstones)."""
        ids, vectors = self.live_vectors()
        self.faiss_index = filled_index(self.index_type, self.dim, self.params, vectors, ids)
        self._refresh()

    def _refresh(self) -> None:
        """After a write: the GPU copy and the flat view follow the CPU index."""
        if self._gpu is None:
            self.search_index = self.faiss_index
        else:
            nprobe = self.params.nprobe if self.index_type == "ivf" else None
            self.search_index = self._gpu.copy(self.faiss_index, nprobe=nprobe)
        view = fb.flat_vectors(self.faiss_index) if self.index_type == "flat" else None
        self._flat_view = view
        self._flat_ids = fb.stored_ids(self.faiss_index) if view is not None else None

    # --- reads ------------------------------------------------------------------------------
    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (lossy for quantised storage)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.empty((0, self.dim), np.float32)
        return np.asarray(self.faiss_index.reconstruct_batch(ids), dtype=np.float32)

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live image in id order, as a copy."""
        view = fb.flat_vectors(self.faiss_index)
        if view is not None:
            stored = fb.stored_ids(self.faiss_index)
            order = np.argsort(stored, kind="stable")
            return stored[order], np.ascontiguousarray(view[order])
        ids = self.table.ids.copy()
        step = _READ_BACK_CHUNK
        chunks = [self.vectors_of(ids[i : i + step]) for i in range(0, len(ids), step)]
        vectors = np.concatenate(chunks) if chunks else np.empty((0, self.dim), np.float32)
        return ids, vectors

    def raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's (or numpy's exact) top-k (scores, ids), tombstones and all."""
        if self.index_type == "flat" and self._gpu is None:
            if self.params.flat_search == "numpy" and self._flat_view is not None:
                scores, rows = exact_topk(queries, self._flat_view, k)
                ids = np.where(rows >= 0, self._flat_ids[np.maximum(rows, 0)], -1)
                return scores, ids
            with fb.blas_for_small_batches():
                return self.search_index.search(queries, k)
        params = fb.search_parameters(self.index_type, self.params)
        if params is None or self._gpu is not None:
            return self.search_index.search(queries, k)
        return self.search_index.search(queries, k, params=params)
