"""Feature extraction with a tiny torch model on the tiny_market fixture, the cache, the plots."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from kdas.data.dataset import read_image
from kdas.data.layouts import load_dataset
from kdas.data.transforms import build_eval_transform
from kdas.errors import KdasError
from kdas.evaluation import (
    Features,
    evaluate_features,
    evaluate_rank,
    extract_features,
    plot_cmc,
    plot_rank_list,
)

SIZE = (32, 16)


class TinyNet(nn.Module):
    """Asymmetric enough that a flipped image gives a different embedding; counts forwards."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.bn = nn.BatchNorm1d(6 * 4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = torch.relu(self.conv(x))
        y = nn.functional.adaptive_avg_pool2d(y, (2, 2)).flatten(1)
        return self.bn(y)


@pytest.fixture(scope="module")
def splits(tiny_market):
    return load_dataset(tiny_market, "market1501")


def manual(model: nn.Module, records, flip: bool) -> np.ndarray:
    transform = build_eval_transform(SIZE)
    model.eval()
    with torch.no_grad():
        x = torch.stack([transform(read_image(r.path)) for r in records])
        out = model(x)
        if flip:
            out = (out + model(torch.flip(x, dims=[3]))) / 2
    return out.numpy()


@pytest.mark.parametrize("flip", [False, True])
def test_features_match_a_manual_forward(splits, flip):
    model = TinyNet()
    model.train()
    feats = extract_features(model, splits.query, SIZE, batch_size=3, flip=flip, progress=False)
    assert model.training  # mode restored
    assert feats.features.dtype == np.float32
    assert feats.features.shape == (len(splits.query), 24)
    assert feats.paths == [r.path for r in splits.query]
    assert feats.pids.tolist() == [r.pid for r in splits.query]
    assert feats.camids.tolist() == [r.camid for r in splits.query]
    np.testing.assert_allclose(feats.features, manual(model, splits.query, flip), atol=1e-5)


def test_flip_changes_the_embedding(splits):
    model = TinyNet()
    plain = extract_features(model, splits.query[:4], SIZE, progress=False).features
    flipped = extract_features(model, splits.query[:4], SIZE, flip=True, progress=False).features
    assert not np.allclose(plain, flipped)


def test_bf16_autocast_is_close_to_fp32(splits):
    model = TinyNet()
    fp32 = extract_features(model, splits.query, SIZE, progress=False).features
    bf16 = extract_features(
        model, splits.query, SIZE, autocast_dtype=torch.bfloat16, progress=False
    ).features
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.1, rtol=0.05)


def test_cache_round_trip_and_invalidation(splits, tmp_path):
    cache = tmp_path / "cache" / "gallery.npz"
    records = splits.gallery[:10]
    model = TinyNet()
    first = extract_features(model, records, SIZE, batch_size=4, cache_path=cache, progress=False)
    assert cache.is_file() and model.calls == 3
    with np.load(cache, allow_pickle=False) as data:  # loads without pickle
        np.testing.assert_array_equal(data["features"], first.features)

    again = extract_features(model, records, SIZE, batch_size=4, cache_path=cache, progress=False)
    assert model.calls == 3  # served from the cache
    np.testing.assert_array_equal(again.features, first.features)
    assert again.paths == first.paths and again.pids.tolist() == first.pids.tolist()

    extract_features(model, records, SIZE, flip=True, cache_path=cache, progress=False)
    assert model.calls > 3  # other options: recomputed
    calls = model.calls
    with torch.no_grad():
        model.conv.bias.add_(0.5)  # new weights: the old cache must not be reused
    changed = extract_features(model, records, SIZE, cache_path=cache, progress=False)
    assert model.calls > calls
    np.testing.assert_allclose(changed.features, manual(model, records, False), atol=1e-5)
    assert not np.allclose(changed.features, first.features)

    calls = model.calls
    extract_features(model, records[:5], SIZE, cache_path=cache, progress=False)
    assert model.calls > calls  # other records: recomputed

    cache.write_bytes(b"not a zip file")  # a damaged cache is recomputed, not trusted
    repaired = extract_features(model, records[:5], SIZE, cache_path=cache, progress=False)
    np.testing.assert_allclose(repaired.features, changed.features[:5], atol=1e-6)
    assert not list(cache.parent.glob(".*.tmp*"))  # no temp files left behind


def test_errors(splits):
    model = TinyNet()
    with pytest.raises(KdasError, match="empty"):
        extract_features(model, [], SIZE, progress=False)
    with pytest.raises(KdasError, match="batch_size"):
        extract_features(model, splits.query, SIZE, batch_size=0, progress=False)
    with pytest.raises(KdasError, match="expected a \\(batch, dim\\)"):
        extract_features(nn.Identity(), splits.query, SIZE, progress=False)
    with pytest.raises(KdasError, match="not found"):
        extract_features(model, [("/nonexistent/x.jpg", 1, 0)], SIZE, progress=False)
    with pytest.raises(KdasError, match="features must be"):
        Features(np.zeros((2, 3), np.float32), np.zeros(2), np.zeros(2), ["a"])


def test_evaluate_features_and_plots(splits, tmp_path):
    model = TinyNet()
    q = extract_features(model, splits.query, SIZE, progress=False)
    g = extract_features(model, splits.gallery, SIZE, progress=False)
    result, distmat = evaluate_features(q, g, max_rank=20)
    assert distmat.shape == (len(q), len(g))
    direct = evaluate_rank(distmat, q.pids, g.pids, q.camids, g.camids, max_rank=20)
    assert result.to_dict() == direct.to_dict()
    reranked, rr_dist = evaluate_features(q, g, rerank=True, metric="euclidean")
    assert rr_dist.shape == distmat.shape and not np.allclose(rr_dist, distmat)
    assert 0.0 <= reranked.mAP <= 1.0

    rank_png = plot_rank_list(
        distmat, splits.query, splits.gallery, tmp_path / "rank.png", num_queries=3, topk=4
    )
    with Image.open(rank_png) as image:
        assert image.size == (550, 700)  # (1.1 * 5 in, 2.2 * 3 in + 0.4 in title) at 100 dpi
    cmc_png = plot_cmc({"a": result.cmc, "b": reranked.cmc}, tmp_path / "sub" / "cmc.png")
    with Image.open(cmc_png) as image:
        assert image.size == (720, 504)
    with pytest.raises(KdasError, match="query and"):
        plot_rank_list(distmat[:, :3], splits.query, splits.gallery, tmp_path / "x.png")
    with pytest.raises(KdasError, match="at least one curve"):
        plot_cmc({}, tmp_path / "y.png")


def test_rank_list_leaves_out_ignored_items():
    """The rank list shows, per query, exactly the protocol's kept items in distance order."""
    from kdas.evaluation.plots import ranked_gallery

    g_pids = np.array([5, 5, -1, 7, 5])
    g_cams = np.array([0, 1, 1, 1, 2])
    order = ranked_gallery(np.array([0.1, 0.5, 0.0, 0.2, 0.5]), 5, 0, g_pids, g_cams)
    assert order.tolist() == [3, 1, 4]  # same-camera 0 and junk 2 left out, tie kept by index


def test_import_stays_free_of_torch_and_matplotlib():
    code = (
        "import sys, kdas.evaluation as e; "
        "e.evaluate_rank; e.rerank; e.compute_distance_matrix; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
