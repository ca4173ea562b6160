"""k-reciprocal re-ranking against a plain transcription of the algorithm with Python sets."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from kdas.errors import KdasError
from kdas.evaluation import compute_distance_matrix, rerank

rerank_module = importlib.import_module("kdas.evaluation.rerank")


def reference(q_g, q_q, g_g, k1, k2, lam):
    """Zhong et al.'s steps written out directly: sets, loops, a dense V."""
    num_q, num_g = q_g.shape
    n = num_q + num_g
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    d = np.square(full).astype(np.float32)
    d = d / d.max(axis=1, keepdims=True)
    ranking = [sorted(range(n), key=lambda j, i=i: (d[i, j], j)) for i in range(n)]

    def reciprocal(i, k):
        return {j for j in ranking[i][:k] if i in ranking[j][:k]}

    half = round(k1 / 2) + 1
    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1 + 1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(rc & r) > 2 / 3 * len(rc):
                expanded |= rc
        members = sorted(expanded)
        w = np.exp(-d[i, members].astype(np.float64))
        v[i, members] = w / w.sum()
    if k2 != 1:
        v = np.array([v[ranking[i][:k2]].mean(axis=0) for i in range(n)])
    out = np.empty((num_q, num_g))
    for i in range(num_q):
        for j in range(num_g):
            s = np.minimum(v[i], v[num_q + j]).sum()
            out[i, j] = (1 - lam) * (1 - s / (2 - s)) + lam * d[i, num_q + j]
    return out


def problem(seed, num_q, num_g, metric="cosine", rounded=False):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((num_q + num_g, 6))
    if rounded:
        feats = np.round(feats)  # duplicates and exact ties
    q, g = feats[:num_q], feats[num_q:]
    mats = [compute_distance_matrix(a, b, metric) for a, b in ((q, g), (q, q), (g, g))]
    for m in mats[1:]:  # exact symmetry and zero diagonal, as distance matrices have
        m[:] = (m + m.T) / 2
        np.fill_diagonal(m, 0)
    return mats


@pytest.mark.parametrize(
    ("seed", "num_q", "num_g", "k1", "k2", "lam", "metric", "rounded"),
    [
        (0, 6, 25, 20, 6, 0.3, "cosine", False),
        (1, 9, 30, 5, 3, 0.3, "euclidean", False),
        (2, 4, 20, 3, 1, 0.5, "cosine", True),
        (3, 1, 12, 7, 2, 0.0, "euclidean", True),
        (4, 12, 5, 4, 4, 1.0, "cosine", False),
        (5, 10, 35, 6, 9, 0.3, "cosine", True),
    ],
)
def test_matches_reference(seed, num_q, num_g, k1, k2, lam, metric, rounded):
    q_g, q_q, g_g = problem(seed, num_q, num_g, metric, rounded)
    got = rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == (num_q, num_g)
    np.testing.assert_allclose(got, reference(q_g, q_q, g_g, k1, k2, lam), atol=2e-6)


def test_large_row_selection_and_small_pieces_agree(monkeypatch):
    q_g, q_q, g_g = problem(7, 8, 40, rounded=True)
    expected = reference(q_g, q_q, g_g, 6, 3, 0.3)
    monkeypatch.setattr(rerank_module, "_SMALL_ROW", 0)  # group-minimum bound on every row
    monkeypatch.setattr(rerank_module, "_BLOCK_BYTES", 4 * 48 * 5)  # 5 rows per block
    monkeypatch.setattr(rerank_module, "_TABLE_BYTES", 1)  # one row per table block
    monkeypatch.setattr(rerank_module, "_TRIPLES", 7)  # many Jaccard pieces
    got = rerank(q_g, q_q, g_g, k1=6, k2=3)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_float64_and_torch_inputs():
    q_g, q_q, g_g = problem(8, 5, 15)
    expected = reference(q_g, q_q, g_g, 4, 2, 0.3)
    got64 = rerank(q_g.astype(np.float64), q_q.astype(np.float64), g_g.astype(np.float64), 4, 2)
    np.testing.assert_allclose(got64, expected, atol=2e-6)
    got_t = rerank(torch.from_numpy(q_g), torch.from_numpy(q_q), torch.from_numpy(g_g), 4, 2)
    np.testing.assert_allclose(got_t, expected, atol=2e-6)


def test_reranking_helps_on_clustered_data():
    """Not a formula check: on two-view clusters the re-ranked matrix should rank better."""
    from kdas.evaluation import evaluate_rank

    rng = np.random.default_rng(9)
    ids = np.repeat(np.arange(1, 31), 6)
    feats = rng.standard_normal((30, 32))[ids - 1] + 0.9 * rng.standard_normal((len(ids), 32))
    cams = np.tile(np.arange(6), 30)
    q_idx = np.flatnonzero(cams == 0)
    g_idx = np.flatnonzero(cams != 0)
    q, g = feats[q_idx], feats[g_idx]
    q_g = compute_distance_matrix(q, g)
    args = (ids[q_idx], ids[g_idx], cams[q_idx], cams[g_idx])
    before = evaluate_rank(q_g, *args)
    after = evaluate_rank(
        rerank(q_g, compute_distance_matrix(q, q), compute_distance_matrix(g, g)), *args
    )
    assert after.mAP > before.mAP


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"q_q": np.zeros((3, 3))}, "q_q must be 2 x 2"),
        ({"g_g": np.zeros((2, 2))}, "g_g must be 3 x 3"),
        ({"q_g": np.full((2, 3), np.nan)}, "q_g contains NaN"),
        ({"g_g": np.full((3, 3), np.inf)}, "g_g contains NaN or Inf"),
        ({"k1": 0}, "k1 must be a positive integer"),
        ({"k2": 2.5}, "k2 must be a positive integer"),
        ({"lambda_value": 1.5}, "lambda_value"),
    ],
)
def test_bad_input(kwargs, message):
    args = {"q_g": np.ones((2, 3)), "q_q": np.zeros((2, 2)), "g_g": np.zeros((3, 3))}
    args.update(kwargs)
    with pytest.raises(KdasError, match=message):
        rerank(**args)
