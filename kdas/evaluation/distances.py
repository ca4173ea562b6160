"""Query-gallery distance matrices in float32, one block of query rows at a time (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.evaluation._arrays import to_numpy

METRICS = ("cosine", "euclidean")
_BLOCK_BYTES = 64 << 20  # scratch per block of query rows


def l2_normalize(features: Any, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length in float32; an all-zero row stays zero (distance 1 to all)."""
    x = _as_features(features, "features")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    return (x / np.maximum(norms, eps).astype(np.float32)[:, None]).astype(np.float32, copy=False)


def _as_features(value: Any, name: str) -> np.ndarray:
    array = to_numpy(value)
    if array.ndim != 2:
        raise KdasError(f"{name} must be a 2-D (num_images, dim) matrix, got {array.shape}")
    if array.dtype.kind not in "fiub":
        raise KdasError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise KdasError(f"{name} contains NaN or Inf; the model produced invalid features")
    return array


def compute_distance_matrix(query: Any, gallery: Any, metric: str = "cosine") -> np.ndarray:
    """(num_query, num_gallery) float32 distances, smaller = more similar.

    cosine: 1 - <q, g> after L2-normalising both sides (in [0, 2]); euclidean: the squared
    Euclidean distance ||q||^2 + ||g||^2 - 2 <q, g>, clipped at 0 against rounding. The matrix
    is filled block by block, so the only scratch beyond the result is one block of rows.
    """
    if metric not in METRICS:
        raise KdasError(f"unknown distance metric {metric!r}; choose one of {', '.join(METRICS)}")
    q = _as_features(query, "query features")
    g = _as_features(gallery, "gallery features")
    if q.shape[1] != g.shape[1]:
        raise KdasError(
            f"query features have dimension {q.shape[1]} but gallery features {g.shape[1]}; "
            "they must come from the same model"
        )
    if metric == "cosine":
        q, g = l2_normalize(q), l2_normalize(g)
    else:
        q_sq = np.einsum("ij,ij->i", q, q)
        g_sq = np.einsum("ij,ij->i", g, g)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    rows = max(1, _BLOCK_BYTES // max(1, 4 * g.shape[0]))
    g_t = g.T
    for r0 in range(0, q.shape[0], rows):
        block = out[r0 : r0 + rows]
        np.matmul(q[r0 : r0 + rows], g_t, out=block)
        if metric == "cosine":
            np.subtract(np.float32(1.0), block, out=block)
        else:
            block *= np.float32(-2.0)
            block += q_sq[r0 : r0 + rows, None]
            block += g_sq[None, :]
            np.maximum(block, np.float32(0.0), out=block)
    return out
