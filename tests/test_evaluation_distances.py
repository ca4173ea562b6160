"""compute_distance_matrix against the textbook formulas, one pair at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdas.errors import KdasError
from kdas.evaluation import compute_distance_matrix
from kdas.evaluation.distances import l2_normalize


def direct(q: np.ndarray, g: np.ndarray, metric: str) -> np.ndarray:
    out = np.empty((len(q), len(g)))
    for i, a in enumerate(q.astype(np.float64)):
        for j, b in enumerate(g.astype(np.float64)):
            if metric == "cosine":
                out[i, j] = 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            else:
                out[i, j] = np.sum((a - b) ** 2)
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_direct_formula(metric):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    g = rng.standard_normal((11, 16)).astype(np.float32) * 3
    got = compute_distance_matrix(q, g, metric=metric)
    assert got.dtype == np.float32 and got.shape == (7, 11)
    np.testing.assert_allclose(got, direct(q, g, metric), rtol=1e-5, atol=1e-5)


def test_blocks_cover_every_row(monkeypatch):
    import importlib

    module = importlib.import_module("kdas.evaluation.distances")
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((13, 4)), rng.standard_normal((5, 4))
    monkeypatch.setattr(module, "_BLOCK_BYTES", 4 * 5 * 3)  # 3 rows per block
    np.testing.assert_allclose(
        compute_distance_matrix(q, g, "euclidean"), direct(q, g, "euclidean"), atol=1e-5
    )


def test_euclidean_is_never_negative_and_self_distance_is_zero():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((20, 64)) * 100).astype(np.float32)
    d = compute_distance_matrix(x, x, "euclidean")
    assert d.min() >= 0
    c = compute_distance_matrix(x, x, "cosine")
    np.testing.assert_allclose(np.diag(c), 0, atol=1e-6)


def test_torch_input_and_zero_vectors():
    q = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    g = torch.tensor([[6.0, 8.0], [-4.0, 3.0]])
    d = compute_distance_matrix(q, g)
    np.testing.assert_allclose(d, [[0.0, 1.0], [1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(g), axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("q", "g", "metric", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), "cosine", "dimension 3 but gallery features 4"),
        (np.zeros(3), np.zeros((2, 3)), "cosine", "2-D"),
        (np.full((2, 3), np.nan), np.zeros((2, 3)), "cosine", "NaN or Inf"),
        (np.zeros((2, 3)), np.zeros((2, 3)), "manhattan", "unknown distance metric"),
    ],
)
def test_bad_input(q, g, metric, message):
    with pytest.raises(KdasError, match=message):
        compute_distance_matrix(q, g, metric=metric)
