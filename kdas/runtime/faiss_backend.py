"""FAISS index construction, parameters and the knobs this faiss build needs to be fast.

The gallery index types are `flat` (exact inner product), `ivf` (inverted lists over k-means
cells) and `hnsw` (graph); each may store vectors as float32 (`flat`), 8-bit scalar-quantised
(`sq8`) or float16 (`fp16`). All take explicit 64-bit ids so records can be removed.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from kdas.errors import BackendUnavailable, KdasError

INDEX_TYPES = ("flat", "ivf", "hnsw")
FLAT_SEARCHES = ("numpy", "faiss")
STORAGES = ("flat", "sq8", "fp16")
DEVICES = ("auto", "cpu", "gpu")
# The one home of the index defaults: these two and IndexParams' fields. The CLI and the
# pipeline config leave a setting unset (None) rather than restating its default.
DEFAULT_INDEX_TYPE: Final = "flat"
DEFAULT_DEVICE: Final = "auto"
_FAISS_HINT = "faiss is not installed: install it with `pip install 'kdas[cpu]'` (or `kdas[gpu]`)"


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise BackendUnavailable(_FAISS_HINT) from None
    return faiss


def gpu_count() -> int:
    faiss = import_faiss()
    getter = getattr(faiss, "get_num_gpus", None)
    return int(getter()) if getter is not None else 0


@dataclass
class IndexParams:
    """Everything that shapes an index; saved in the manifest so a reload searches the same way.

    `nlist=None` picks a cell count from the gallery size at build time; `nprobe`,
    `ef_search` only change searching and may be changed on an existing index.
    """

    storage: str = "flat"
    nlist: int | None = None
    nprobe: int = 16
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    # exact search: numpy blocked top-k (kdas.runtime.exact), or faiss with its BLAS threshold
    # lifted. numpy: as fast for one query, 0.8x for batches of 100 on an idle CPU, and 6x
    # faster when the cores are shared (faiss's OpenMP loops collapse under contention, as in a
    # service answering concurrent requests); docs/benchmarks.md, bench_index.
    flat_search: str = "numpy"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexParams:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self, index_type: str) -> None:
        if index_type not in INDEX_TYPES:
            raise KdasError(f"unknown index type {index_type!r}: use {', '.join(INDEX_TYPES)}")
        if self.flat_search not in FLAT_SEARCHES:
            raise KdasError(f"flat_search must be one of {', '.join(FLAT_SEARCHES)}")
        if self.storage not in STORAGES:
            raise KdasError(f"unknown vector storage {self.storage!r}: use {', '.join(STORAGES)}")
        if index_type == "flat" and self.storage != "flat":
            raise KdasError("a flat index stores exact float32: use ivf or hnsw for sq8/fp16")
        for name in ("nlist", "nprobe", "m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if name == "nlist" and value is None:  # picked from the gallery size at build time
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise KdasError(f"index parameter {name} must be an integer, got {value!r}")
            if value < 1:
                raise KdasError(f"index parameter {name} must be >= 1, got {value}")


def default_nlist(count: int) -> int:
    """About 4·sqrt(N) cells, but at least 39 training points per cell (k-means needs them)."""
    if count <= 0:
        return 1
    return int(max(1, min(round(4 * math.sqrt(count)), count // 39)))


def _quantizer_type(faiss: Any, storage: str) -> int:
    return {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}[storage]


def new_index(index_type: str, dim: int, params: IndexParams, count: int) -> Any:
    """An empty index that accepts `add_with_ids`; trained later by `train_if_needed`."""
    faiss = import_faiss()
    params.validate(index_type)
    ip = faiss.METRIC_INNER_PRODUCT
    if index_type == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if index_type == "ivf":
        if params.nlist is None:
            params.nlist = default_nlist(count)
        quantizer = faiss.IndexFlatIP(dim)
        if params.storage == "flat":
            index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, ip)
        else:
            qtype = _quantizer_type(faiss, params.storage)
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, params.nlist, qtype, ip)
        index.nprobe = params.nprobe
        # ids -> list positions, so vectors can be read back (re-ranking) after removals
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index
    if params.storage == "flat":
        inner = faiss.IndexHNSWFlat(dim, params.m, ip)
    else:
        inner = faiss.IndexHNSWSQ(dim, _quantizer_type(faiss, params.storage), params.m, ip)
    inner.hnsw.efConstruction = params.ef_construction
    inner.hnsw.efSearch = params.ef_search
    return faiss.IndexIDMap2(inner)


TRAIN_POINTS_PER_CELL = 64  # k-means sample per IVF cell (faiss's default 256 is 4x slower)
KMEANS_ITERATIONS = 10


def train_if_needed(index: Any, vectors: np.ndarray, seed: int = 0) -> None:
    """IVF cells and SQ ranges are learnt from (a sample of) the first gallery.

    64 points per cell and 10 k-means iterations: on clustered Re-ID embeddings more of either
    did not change recall measurably, and it makes a 1M-image build minutes faster.
    """
    if index.is_trained:
        return
    if len(vectors) == 0:
        raise KdasError("an ivf or quantised index needs embeddings to train on: add some first")
    faiss = import_faiss()
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if hasattr(inner, "cp"):
        inner.cp.seed = seed
        inner.cp.niter = KMEANS_ITERATIONS
        inner.cp.max_points_per_centroid = TRAIN_POINTS_PER_CELL
        limit = TRAIN_POINTS_PER_CELL * inner.nlist
        if len(vectors) > limit:  # sample here, so faiss never copies the whole gallery
            rows = np.sort(np.random.default_rng(seed).choice(len(vectors), limit, replace=False))
            vectors = vectors[rows]
    elif len(vectors) > 200_000:  # scalar-quantiser ranges: a sample is plenty
        rows = np.sort(np.random.default_rng(seed).choice(len(vectors), 200_000, replace=False))
        vectors = vectors[rows]
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))


def search_parameters(index_type: str, params: IndexParams) -> Any:
    """Per-call parameters: thread-safe, unlike setting nprobe/efSearch on a shared index."""
    faiss = import_faiss()
    if index_type == "ivf":
        return faiss.SearchParametersIVF(nprobe=int(params.nprobe))
    if index_type == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=int(params.ef_search))
    return None


# --- the BLAS threshold -------------------------------------------------------------------------
# This faiss build compares distance_compute_blas_threshold (128,000) with queries x dimension;
# below it, exact search scans the whole gallery once per query instead of one matrix product
# (7.2 s vs 0.56 s for 100 queries on 1M x 512). Setting it to 0 is a process-wide change, so
# it is reference-counted: the first search in sets it, the last one out restores it.
_threshold_lock = threading.Lock()
_threshold_users = 0
_threshold_saved: int | None = None


@contextlib.contextmanager
def blas_for_small_batches() -> Iterator[None]:
    global _threshold_users, _threshold_saved
    faiss = import_faiss()
    with _threshold_lock:
        if _threshold_users == 0:
            _threshold_saved = int(faiss.cvar.distance_compute_blas_threshold)
            faiss.cvar.distance_compute_blas_threshold = 0
        _threshold_users += 1
    try:
        yield
    finally:
        with _threshold_lock:
            _threshold_users -= 1
            if _threshold_users == 0 and _threshold_saved is not None:
                faiss.cvar.distance_compute_blas_threshold = _threshold_saved
                _threshold_saved = None


# --- devices -----------------------------------------------------------------------------------
def resolve_device(device: str, index_type: str) -> str:
    """ "auto" takes a GPU when faiss has one; "gpu" without one says so in one line."""
    if device not in DEVICES:
        raise KdasError(f"unknown index device {device!r}: use {', '.join(DEVICES)}")
    gpus = gpu_count()
    if device == "gpu":
        if gpus == 0:
            raise BackendUnavailable(
                "faiss has no GPU here (faiss-cpu build or no CUDA device): install "
                "faiss-gpu-cu12 (`pip install 'kdas[gpu]'`) on a CUDA machine, or use device='cpu'"
            )
        if index_type == "hnsw":
            raise BackendUnavailable("faiss has no GPU HNSW index: use flat or ivf on the GPU")
    if device == "auto":
        return "gpu" if gpus > 0 and index_type != "hnsw" else "cpu"
    return device


class GpuMirror:
    """A GPU copy of a CPU index for searching; the CPU index stays the one that is saved."""

    def __init__(self) -> None:
        faiss = import_faiss()
        self._resources = faiss.StandardGpuResources()

    def copy(self, cpu_index: Any, nprobe: int | None = None) -> Any:
        faiss = import_faiss()
        try:
            gpu_index = faiss.index_cpu_to_gpu(self._resources, 0, cpu_index)
            if nprobe is not None:
                faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise BackendUnavailable(f"could not move the index to the GPU: {first}") from None
        return gpu_index


# --- files -------------------------------------------------------------------------------------
def write_index(index: Any, path: Path) -> None:
    import_faiss().write_index(index, str(path))


def read_index(path: Path) -> Any:
    faiss = import_faiss()
    if not path.is_file():
        raise KdasError(f"index file {path} is missing: the index folder is incomplete; rebuild it")
    try:
        return faiss.read_index(str(path))
    except RuntimeError:
        raise KdasError(
            f"index file {path} is corrupt or truncated: rebuild it with `kdas index build`"
        ) from None


def stored_ids(index: Any) -> np.ndarray:
    """The ids an index holds, in storage order (IDMap2) or unordered (IVF)."""
    faiss = import_faiss()
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if invlists.list_size(i) > 0
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def flat_vectors(index: Any) -> np.ndarray | None:
    """Zero-copy view of a flat index's float32 vectors (rows in storage order), else None.

    Valid only until the index is next modified: the caller holds the index lock.
    """
    faiss = import_faiss()
    if not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, faiss.IndexFlat):
        return None
    n, d = inner.ntotal, inner.d
    if n == 0:
        return np.empty((0, d), np.float32)
    return faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
