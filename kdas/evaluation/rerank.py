"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised, with the original semantics.

The published algorithm, over all N = Q + G images:
1. d = the (N x N) distance matrix built from q_q, q_g, g_g, squared, each row divided by its
   maximum (float32, as the original).
2. N(i, k) = the k nearest images of i, itself included; the k-reciprocal set
   R(i) = {j in N(i, k1 + 1) : i in N(j, k1 + 1)}.
3. For every candidate c in R(i), R_half(c) is built the same way with round(k1 / 2) + 1
   neighbours; when |R_half(c) ∩ R(i)| > 2/3 |R_half(c)| it is added: R*(i) = R(i) ∪ ...
4. V[i, j] = exp(-d[i, j]) / sum over R*(i), for j in R*(i); local query expansion replaces V[i]
   by the mean of V over N(i, k2) (skipped when k2 = 1).
5. Jaccard distance d_J(i, j) = 1 - s / (2 - s) with s = sum_c min(V[i, c], V[j, c]);
   result = (1 - lambda) d_J + lambda d, for query rows and gallery columns.

Only the top (k1 + 1) neighbours of each row are ever used, so the N x N matrix is never held:
rows are built a block at a time and reduced to their neighbours with an exact, stable (ties by
index) selection; reciprocity and expansion are gathers on the neighbour table; V is a scipy
sparse matrix; and the sums of minima are computed by enumerating (query, column, gallery image)
triples from V's sparse structure a bounded piece at a time. Differences from the original
code: V and the Jaccard distances are kept in float64 (the original used float16 to save the
memory a dense V needed), ties are broken by index (the original's quicksort order is
arbitrary), and the rows are normalised by their own maximum (the original divides columns,
which is the same for symmetric q_q and g_g).

Memory beyond the inputs: the (Q x G) float32 result, a 16 MB block of distance rows, the
neighbour table N x (k1 + 1), the sparse V and its query expansion (about N x k2 x |R*| entries
of 12 bytes, |R*| being typically 20-60), and at most ~100 MB for the triples of one piece;
measured peaks are in docs/benchmarks.md (under 1 GB above the inputs at Market-1501 size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

from kdas.errors import KdasError
from kdas.evaluation._arrays import all_finite, as_float_matrix

_BLOCK_BYTES = 16 << 20  # rows of the full distance matrix built at once
_TABLE_BYTES = 16 << 20  # reciprocity / expansion temporaries per block of rows
_TRIPLES = 2_000_000  # (query, column, gallery) triples handled per piece (~100 MB)
_SMALL_ROW = 2048  # rows up to this length select neighbours with a plain partition


def rerank(
    q_g: Any, q_q: Any, g_g: Any, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """Re-ranked (num_query, num_gallery) float32 distances from the three distance matrices.

    `q_q` and `g_g` are the query-query and gallery-gallery distances of the same metric as
    `q_g` (symmetric, zero on the diagonal); numpy arrays or torch tensors.
    """
    qg = as_float_matrix(q_g, "q_g")
    qq = as_float_matrix(q_q, "q_q")
    gg = as_float_matrix(g_g, "g_g")
    num_q, num_g = qg.shape
    if num_q == 0 or num_g == 0:
        raise KdasError(f"q_g is empty (shape {num_q} x {num_g}); need queries and gallery")
    if qq.shape != (num_q, num_q):
        raise KdasError(f"q_q must be {num_q} x {num_q} to match q_g, got {qq.shape}")
    if gg.shape != (num_g, num_g):
        raise KdasError(f"g_g must be {num_g} x {num_g} to match q_g, got {gg.shape}")
    for name, matrix in (("q_g", qg), ("q_q", qq), ("g_g", gg)):
        if not all_finite(matrix):
            raise KdasError(f"{name} contains NaN or Inf; check the features behind it")
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise KdasError(f"{name} must be a positive integer, got {k!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise KdasError(f"lambda_value must lie in [0, 1], got {lambda_value}")

    total = num_q + num_g
    k_fwd = min(int(k1) + 1, total)
    k_half = min(round(int(k1) / 2) + 1, total)  # round half to even, as np.around
    k_qe = min(int(k2), total)
    nn, scale = _neighbours(qq, qg, gg, max(k_fwd, k_qe))
    recip = _reciprocal(nn[:, :k_fwd])
    recip_half = _reciprocal(nn[:, :k_half])
    rows, cols = _expanded_sets(nn[:, :k_fwd], recip, nn[:, :k_half], recip_half)

    from scipy import sparse  # here, so the runtime's import of kdas.evaluation stays light

    weights = np.exp(-_normalised(qq, qg, gg, scale, rows, cols).astype(np.float64))
    weights /= np.bincount(rows, weights=weights, minlength=total)[rows]
    v = sparse.csr_array((weights, (rows, cols)), shape=(total, total))
    if k2 != 1:
        expand = sparse.csr_array(
            (
                np.full(total * k_qe, 1.0 / k_qe),
                (np.repeat(np.arange(total), k_qe), nn[:, :k_qe].ravel()),
            ),
            shape=(total, total),
        )
        v = expand @ v
    v = sparse.csr_array(v)
    v.sum_duplicates()
    v.sort_indices()
    return _combine(v, qg, scale[:num_q], float(lambda_value))


def _square_into(out: np.ndarray, source: np.ndarray) -> None:
    """out = source**2 computed in the source's precision, then stored as float32."""
    np.square(source, out=out, casting="same_kind")


def _row_block(qq, qg, gg, start: int, stop: int, out: np.ndarray) -> None:
    """Rows [start, stop) of the squared (N x N) matrix [[q_q, q_g], [q_g^T, g_g]]."""
    num_q = qq.shape[0]
    if stop <= num_q:
        _square_into(out[:, :num_q], qq[start:stop])
        _square_into(out[:, num_q:], qg[start:stop])
    else:
        a, b = start - num_q, stop - num_q
        _square_into(out[:, :num_q], qg[:, a:b].T)
        _square_into(out[:, num_q:], gg[a:b])


def _block_ranges(num_q: int, total: int, rows: int):
    """Row blocks that never straddle the query/gallery boundary."""
    for lo, hi in ((0, num_q), (num_q, total)):
        for start in range(lo, hi, rows):
            yield start, min(hi, start + rows)


def _neighbours(qq, qg, gg, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the normalised matrix: its `width` nearest columns (stable order) and its max."""
    num_q, num_g = qg.shape
    total = num_q + num_g
    rows = max(1, _BLOCK_BYTES // (4 * total))
    buffer = np.empty((min(rows, total), total), dtype=np.float32)
    nn = np.empty((total, width), dtype=np.int64)
    scale = np.empty(total, dtype=np.float32)
    for start, stop in _block_ranges(num_q, total, rows):
        block = buffer[: stop - start]
        _row_block(qq, qg, gg, start, stop, block)
        top = block.max(axis=1)
        top[top == 0] = 1  # an all-zero row stays zero instead of becoming NaN
        block /= top[:, None]
        scale[start:stop] = top
        nn[start:stop] = _smallest(block, width)
    return nn, scale


def _smallest(block: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest entries per row, ordered by (value, index).

    Exact without sorting rows: an upper bound t on each row's k-th smallest value (the k-th
    smallest of 512 strided group minima: k groups each hold an element <= t) leaves a few
    candidates, which are then sorted.
    """
    num_rows, width = block.shape
    groups = min(512, width // 2)
    if width <= _SMALL_ROW or k > groups:
        bound = np.partition(block, k - 1, axis=1)[:, k - 1]
    else:
        usable = width // groups * groups
        minima = block[:, :usable].reshape(num_rows, -1, groups).min(axis=1)
        bound = np.partition(minima, k - 1, axis=1)[:, k - 1]
    flat = np.flatnonzero(block <= bound[:, None])
    row, col = np.divmod(flat, width)
    order = np.lexsort((col, block.ravel()[flat], row))
    row, col = row[order], col[order]
    slot = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    keep = slot < k
    out = np.empty((num_rows, k), dtype=np.int64)
    out[row[keep], slot[keep]] = col[keep]
    return out


def _reciprocal(forward: np.ndarray) -> np.ndarray:
    """recip[i, s]: image forward[i, s] also has i among its own neighbours."""
    total, k = forward.shape
    out = np.empty((total, k), dtype=bool)
    rows = max(1, _TABLE_BYTES // (8 * k * k))
    for start in range(0, total, rows):
        ids = np.arange(start, min(total, start + rows))
        out[ids] = (forward[forward[ids]] == ids[:, None, None]).any(axis=2)
    return out


def _expanded_sets(
    forward: np.ndarray, recip: np.ndarray, half: np.ndarray, recip_half: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """R*(i) for every i as (row, column) pairs sorted by row, then column."""
    total, k = forward.shape
    kh = half.shape[1]
    half_size = recip_half.sum(axis=1)
    rows_per = max(1, _TABLE_BYTES // (k * kh * (k + 16)))
    out_rows, out_cols = [], []
    for start in range(0, total, rows_per):
        ids = np.arange(start, min(total, start + rows_per))
        fwd, rec = forward[ids], recip[ids]  # (b, k): R(i) = fwd[rec]
        cand_sets = half[fwd]  # (b, k, kh): R_half of each candidate = cand_sets[cand_mask]
        cand_mask = recip_half[fwd]
        in_r = ((cand_sets[..., None] == fwd[:, None, None, :]) & rec[:, None, None, :]).any(-1)
        overlap = np.count_nonzero(in_r & cand_mask, axis=2)
        added = rec & (3 * overlap > 2 * half_size[fwd])  # |∩| > 2/3 |R_half(c)|, exactly
        members = np.concatenate(
            [
                np.where(rec, fwd, total),
                np.where(added[..., None] & cand_mask, cand_sets, total).reshape(len(ids), -1),
            ],
            axis=1,
        )
        members.sort(axis=1)
        fresh = members != total
        fresh[:, 1:] &= members[:, 1:] != members[:, :-1]
        r, c = np.nonzero(fresh)
        out_rows.append(ids[r])
        out_cols.append(members[r, c])
    return np.concatenate(out_rows), np.concatenate(out_cols)


def _normalised(qq, qg, gg, scale, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Entries d[rows, cols] of the squared, row-normalised matrix, gathered from the blocks."""
    num_q = qq.shape[0]
    out = np.empty(len(rows), dtype=np.float32)
    rq, cq = rows < num_q, cols < num_q
    for mask, matrix, r, c in (
        (rq & cq, qq, rows, cols),
        (rq & ~cq, qg, rows, cols - num_q),
        (~rq & cq, qg, cols, rows - num_q),
        (~rq & ~cq, gg, rows - num_q, cols - num_q),
    ):
        out[mask] = np.square(matrix[r[mask], c[mask]])  # squared in the input precision
    return out / scale[rows]


def _combine(v: sparse.csr_array, qg: np.ndarray, scale: np.ndarray, lam: float) -> np.ndarray:
    """(1 - lambda) Jaccard + lambda d for query rows x gallery columns, a few rows at a time."""
    from scipy import sparse

    num_q, num_g = qg.shape
    vq = v[:num_q]
    vg = sparse.csc_array(v[num_q:])
    vg.sort_indices()
    col_ptr, col_rows, col_vals = vg.indptr, vg.indices, vg.data
    col_nnz = np.diff(col_ptr)
    entry_row = np.repeat(np.arange(num_q), np.diff(vq.indptr))
    entry_cost = col_nnz[vq.indices]  # triples generated by each nonzero of a query row
    row_cost = np.bincount(entry_row, weights=entry_cost, minlength=num_q)
    max_rows = max(1, (32 << 20) // (8 * num_g))  # the dense sum-of-minima block
    out = np.empty((num_q, num_g), dtype=np.float32)
    for start, stop in _pieces(row_cost, _TRIPLES, max_rows):
        sums = np.zeros((stop - start) * num_g)
        lo, hi = vq.indptr[start], vq.indptr[stop]
        for a, b in _pieces(entry_cost[lo:hi], _TRIPLES, hi - lo):
            e = slice(lo + a, lo + b)
            counts = col_nnz[vq.indices[e]]
            which = np.repeat(np.arange(b - a), counts)
            pos = np.repeat(col_ptr[vq.indices[e]] - (np.cumsum(counts) - counts), counts)
            pos += np.arange(len(which))
            key = (entry_row[e][which] - start) * num_g + col_rows[pos]
            mins = np.minimum(vq.data[e][which], col_vals[pos])
            sums += np.bincount(key, weights=mins, minlength=len(sums))
        sums = sums.reshape(stop - start, num_g)
        jaccard = 1.0 - sums / (2.0 - sums)
        original = np.square(qg[start:stop]).astype(np.float32, copy=False)
        original /= scale[start:stop, None]
        out[start:stop] = (1.0 - lam) * jaccard + lam * original
    return out


def _pieces(cost: np.ndarray, budget: float, max_len: int):
    """Consecutive [a, b) slices of `cost`, each summing to at most `budget` (or one item) and
    at most `max_len` long."""
    cumulative = np.cumsum(cost)
    a = 0
    while a < len(cost):
        base = cumulative[a - 1] if a else 0
        b = int(np.searchsorted(cumulative, base + budget, side="right"))
        b = min(max(b, a + 1), a + max_len)
        yield a, b
        a = b
