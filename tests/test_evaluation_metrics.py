"""evaluate_rank against a plain per-query implementation of the Market-1501 protocol."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from kdas.errors import KdasError
from kdas.evaluation import RankResult, evaluate_rank
from kdas.evaluation.bootstrap import bootstrap_means

metrics_module = importlib.import_module("kdas.evaluation.metrics")
bootstrap_module = importlib.import_module("kdas.evaluation.bootstrap")


def reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """One query at a time, with Python lists: sort by (distance, index), drop what the protocol
    ignores, then read CMC / AP / INP off the list of hits."""
    cmcs, aps, inps = [], [], []
    for q in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j, q=q: (distmat[q][j], j))
        hits = []
        for j in order:
            if g_pids[j] == -1:
                continue  # junk
            if g_pids[j] == q_pids[q] and g_cams[j] == q_cams[q]:
                continue  # same identity seen by the same camera
            hits.append(g_pids[j] == q_pids[q] and g_pids[j] not in (0, -1))
        positions = [i + 1 for i, hit in enumerate(hits) if hit]
        if not positions:
            continue
        cmcs.append([1.0 if k >= positions[0] else 0.0 for k in range(1, max_rank + 1)])
        aps.append(sum((n + 1) / p for n, p in enumerate(positions)) / len(positions))
        inps.append(len(positions) / positions[-1])
    if not aps:
        return None
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def random_problem(rng, num_q, num_g, num_ids, num_cams, levels=None, dtype=np.float32):
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(-1, num_ids + 1, num_g)  # includes junk (-1) and distractors (0)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    if levels:  # few distinct values: many exact ties
        dist = rng.integers(0, levels, (num_q, num_g)).astype(dtype)
    else:
        dist = rng.random((num_q, num_g)).astype(dtype)
    return dist, q_pids, g_pids, q_cams, g_cams


def assert_same(result: RankResult, expected) -> None:
    cmc, mean_ap, mean_inp, valid = expected
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(mean_ap, abs=1e-12)
    assert result.mINP == pytest.approx(mean_inp, abs=1e-12)
    assert result.num_valid_queries == valid


def test_hand_computed_example():
    # kept list for the query (pid 1, cam 0): [wrong, hit, distractor, hit] -> hits at 2 and 4
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=np.float32)
    g_pids = np.array([1, 2, 1, -1, 0, 1])
    g_cams = np.array([0, 1, 1, 1, 1, 2])
    result = evaluate_rank(dist, [1], g_pids, [0], g_cams, max_rank=6)
    np.testing.assert_allclose(result.cmc, [0, 1, 1, 1, 1, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.mINP == pytest.approx(2 / 4)
    # one query: the bootstrap can only draw it again, so there is no evaluation noise
    expected = {"rank1": 0.0, "rank5": 1.0, "mAP": 0.5, "mINP": 0.5, "mAP_se": 0.0, "rank1_se": 0.0}
    assert result.to_dict() == expected
    assert result.rank(2) == 1.0


def test_ties_are_broken_by_gallery_index():
    dist = np.array([[0.5, 0.2, 0.2, 0.2]], dtype=np.float32)
    # equal distances: index 1 (wrong) comes before index 2 (hit), index 3 (wrong) after
    result = evaluate_rank(dist, [7], [3, 3, 7, 4], [0], [1, 1, 1, 1], max_rank=4)
    np.testing.assert_allclose(result.cmc, [0, 1, 1, 1])
    assert result.mAP == pytest.approx(1 / 2)
    flipped = evaluate_rank(dist, [7], [3, 7, 3, 4], [0], [1, 1, 1, 1], max_rank=4)
    assert flipped.rank(1) == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_matches_reference_on_random_problems(seed):
    rng = np.random.default_rng(seed)
    for _ in range(12):
        num_q, num_g = int(rng.integers(1, 25)), int(rng.integers(1, 90))
        levels = int(rng.integers(2, 6)) if rng.random() < 0.5 else None
        dtype = np.float64 if rng.random() < 0.3 else np.float32
        args = random_problem(rng, num_q, num_g, int(rng.integers(1, 9)), 3, levels, dtype)
        max_rank = int(rng.integers(1, 120))  # often larger than the gallery
        expected = reference(*args, max_rank)
        if expected is None:
            with pytest.raises(KdasError, match="none of the"):
                evaluate_rank(*args, max_rank=max_rank)
            continue
        result = evaluate_rank(*args, max_rank=max_rank, num_threads=int(rng.integers(1, 3)))
        assert len(result.cmc) == max_rank
        assert_same(result, expected)


def test_tiny_gallery_pads_cmc_with_ones():
    dist = np.array([[0.1, 0.3], [0.2, 0.4]], dtype=np.float32)  # hits at rank 1 and 2
    result = evaluate_rank(dist, [1, 2], [1, 2], [0, 0], [1, 1], max_rank=50)
    assert result.cmc.shape == (50,)
    np.testing.assert_allclose(result.cmc[:1], [0.5])
    np.testing.assert_allclose(result.cmc[1:], 1.0)


def test_queries_without_true_match_are_skipped():
    dist = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], dtype=np.float32)
    # query 0: its only same-pid image is from its own camera; query 1: pid absent; query 2: ok
    result = evaluate_rank(dist, [1, 5, 2], [1, 2], [0, 0, 0], [0, 1], max_rank=2)
    assert result.num_valid_queries == 1 and result.num_queries == 3
    np.testing.assert_allclose(result.cmc, [0, 1])


def test_distractor_query_and_gallery_never_match():
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    result = evaluate_rank(dist, [4], [0, 0, 4], [0], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(result.cmc, [0, 0, 1])
    with pytest.raises(KdasError, match="none of the"):
        evaluate_rank(dist, [0], [0, 0, 0], [0], [1, 1, 1])


def test_chunking_thresholds_and_sort_path_agree_with_reference(monkeypatch):
    rng = np.random.default_rng(11)
    args = random_problem(rng, 60, 300, 4, 4, levels=7)  # many true matches per query, ties
    expected = reference(*args, 20)
    baseline = evaluate_rank(*args, max_rank=20, num_threads=1)
    assert_same(baseline, expected)
    monkeypatch.setattr(metrics_module, "_CHUNK_QUERIES", 7)
    monkeypatch.setattr(metrics_module, "_BITMAP_BYTES", 2 * 64 * 5)  # 5 thresholds per block
    assert_same(evaluate_rank(*args, max_rank=20, num_threads=2), expected)
    monkeypatch.setattr(metrics_module, "_SORT_MIN_MATCHES", 40)  # some queries sort, some count
    assert_same(evaluate_rank(*args, max_rank=20, num_threads=2), expected)
    monkeypatch.setattr(metrics_module, "_SORT_MIN_MATCHES", 0)
    assert_same(evaluate_rank(*args, max_rank=20, num_threads=1), expected)


def test_accepts_torch_tensors_and_other_dtypes():
    rng = np.random.default_rng(3)
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 12, 40, 5, 3)
    expected = reference(dist, q_pids, g_pids, q_cams, g_cams, 10)
    as_torch = evaluate_rank(
        torch.from_numpy(dist).requires_grad_(True),
        torch.from_numpy(q_pids),
        torch.from_numpy(g_pids),
        torch.from_numpy(q_cams),
        torch.from_numpy(g_cams),
        max_rank=10,
    )
    assert_same(as_torch, expected)
    halves = dist.astype(np.float16)
    half_expected = reference(halves.astype(np.float32), q_pids, g_pids, q_cams, g_cams, 10)
    assert_same(evaluate_rank(halves, q_pids, g_pids, q_cams, g_cams, 10), half_expected)
    bf16 = torch.from_numpy(dist).to(torch.bfloat16)
    bf16_expected = reference(bf16.float().numpy(), q_pids, g_pids, q_cams, g_cams, 10)
    assert_same(evaluate_rank(bf16, q_pids, g_pids, q_cams, g_cams, 10), bf16_expected)
    lists = evaluate_rank(dist.tolist(), list(q_pids), list(g_pids), list(q_cams), list(g_cams), 10)
    assert_same(lists, reference(dist.astype(np.float64), q_pids, g_pids, q_cams, g_cams, 10))


def test_infinite_distances_rank_last():
    dist = np.array([[np.inf, 0.5, np.inf]], dtype=np.float32)
    result = evaluate_rank(dist, [1], [1, 2, 1], [0], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(result.cmc, [0, 1, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distmat": np.zeros(3)}, "2-D"),
        ({"q_pids": [1, 2, 3]}, "q_pids has 3 entries"),
        ({"g_camids": [0]}, "g_camids has 1 entries"),
        ({"q_pids": [1.5, 2.0]}, "integer"),
        ({"distmat": np.array([[0.1, np.nan], [0.2, 0.3]])}, "NaN"),
        ({"distmat": np.array([[0.1, 0.2], [0.2, np.nan]])}, "NaN"),
        ({"max_rank": 0}, "max_rank"),
        ({"distmat": np.zeros((2, 2), dtype=complex)}, "real numbers"),
        ({"g_pids": [-1, -1]}, "none of the"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, message):
    args = {
        "distmat": np.array([[0.1, 0.2], [0.2, 0.3]], dtype=np.float32),
        "q_pids": [1, 2],
        "g_pids": [1, 2],
        "q_camids": [0, 0],
        "g_camids": [1, 1],
    }
    args.update(kwargs)
    with pytest.raises(KdasError, match=message):
        evaluate_rank(**args)


def test_nan_in_a_skipped_query_row_is_still_reported():
    dist = np.array([[0.1, 0.2], [np.nan, 0.3]], dtype=np.float32)
    with pytest.raises(KdasError, match="NaN"):
        evaluate_rank(dist, [1, 9], [1, 2], [0, 0], [1, 1])


def test_rank_outside_curve_raises():
    result = evaluate_rank(np.array([[0.1]]), [1], [1], [0], [1], max_rank=3)
    assert set(result.to_dict()) == {"rank1", "mAP", "mINP", "mAP_se", "rank1_se"}
    assert all(isinstance(v, float) for v in result.to_dict().values())
    with pytest.raises(KdasError, match="outside"):
        result.rank(4)


def test_protocol_rules_can_be_turned_off():
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    # with distractor_pid=None, pid 0 is an ordinary identity; with junk_pid=None -1 is too
    result = evaluate_rank(dist, [0], [5, 0, 0], [0], [1, 1, 1], max_rank=3, distractor_pid=None)
    np.testing.assert_allclose(result.cmc, [0, 1, 1])
    kept = evaluate_rank(dist, [3], [-1, 3, 3], [0], [1, 1, 1], max_rank=3, junk_pid=None)
    assert kept.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    removed = evaluate_rank(dist, [3], [-1, 3, 3], [0], [1, 1, 1], max_rank=3)
    assert removed.mAP == pytest.approx(1.0)


def per_query_reference(distmat, q_pids, g_pids, q_cams, g_cams):
    """(query row, AP, rank of the first true match) of every valid query, one at a time."""
    out = []
    for q in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j, q=q: (distmat[q][j], j))
        kept = [
            j
            for j in order
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[q] and g_cams[j] == q_cams[q])
        ]
        hits = [i + 1 for i, j in enumerate(kept) if g_pids[j] == q_pids[q] and g_pids[j] > 0]
        if hits:
            out.append((q, sum((n + 1) / p for n, p in enumerate(hits)) / len(hits), hits[0]))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_per_query_ap_and_first_match_match_reference(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(10):
        num_q, num_g = int(rng.integers(1, 30)), int(rng.integers(1, 80))
        levels = int(rng.integers(2, 6)) if rng.random() < 0.5 else None
        args = random_problem(rng, num_q, num_g, int(rng.integers(1, 8)), 3, levels)
        expected = per_query_reference(*args)
        if not expected:
            continue
        result = evaluate_rank(*args, max_rank=10, num_threads=int(rng.integers(1, 3)))
        rows, aps, firsts = (np.array(column) for column in zip(*expected, strict=True))
        np.testing.assert_array_equal(result.query_index, rows)
        np.testing.assert_allclose(result.ap, aps, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(result.first_match, firsts)
        assert result.mAP == pytest.approx(float(np.mean(result.ap)), abs=1e-15)
        assert result.rank(1) == pytest.approx(float(np.mean(result.first_match == 1)))
        assert len(result.ap) == result.num_valid_queries
        with pytest.raises(ValueError):  # the per-query arrays are read-only
            result.ap[0] = 1.0


def test_bootstrap_equals_a_plain_resampling_loop():
    values = np.random.default_rng(5).random(37)
    flags = values > 0.4
    rng = np.random.default_rng(3)  # the reference: B resamples drawn in one go, in Python
    means = [(values[i].mean(), flags[i].mean()) for i in rng.integers(0, 37, size=(200, 37))]
    means = np.array(means)
    got = bootstrap_means({"a": values, "b": flags}, resamples=200, seed=3, level=0.9)
    for j, name in enumerate(("a", "b")):
        assert got[name].mean == pytest.approx(float(np.mean([values, flags][j])), abs=1e-15)
        assert got[name].se == pytest.approx(float(np.std(means[:, j], ddof=1)), abs=1e-15)
        assert got[name].low == pytest.approx(float(np.quantile(means[:, j], 0.05)), abs=1e-15)
        assert got[name].high == pytest.approx(float(np.quantile(means[:, j], 0.95)), abs=1e-15)
        assert (got[name].n, got[name].resamples, got[name].level) == (37, 200, 0.9)


def test_bootstrap_chunks_do_not_change_the_draws(monkeypatch):
    values = np.random.default_rng(9).random(50)
    whole = bootstrap_means({"x": values}, resamples=300)["x"]
    monkeypatch.setattr(bootstrap_module, "_INDEX_BUDGET", 7 * 50 + 3)  # 7 resamples per chunk
    assert bootstrap_means({"x": values}, resamples=300)["x"] == whole


def test_bootstrap_se_matches_the_analytic_standard_error():
    rng = np.random.default_rng(21)
    # many queries, few identities and much noise: AP spread over (0, 1], rank-1 about 0.5
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 3000, 150, 6, 4)
    result = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    n = result.num_valid_queries
    assert n > 2500
    noise = result.bootstrap()
    analytic_map = np.std(result.ap) / np.sqrt(n)
    p = result.rank(1)
    analytic_rank1 = np.sqrt(p * (1 - p) / n)
    # the bootstrap se of 1000 resamples is itself uncertain by about 1/sqrt(2 * 1000) = 2.2 %
    assert noise["mAP"].se == pytest.approx(analytic_map, rel=0.08)
    assert noise["rank1"].se == pytest.approx(analytic_rank1, rel=0.08)
    for name, mean in (("mAP", result.mAP), ("rank1", p)):
        est = noise[name]
        assert est.mean == pytest.approx(mean, abs=1e-15)
        assert est.low < mean < est.high
        # for a mean of many queries the percentile interval is close to the normal one
        assert est.high - est.low == pytest.approx(2 * 1.96 * est.se, rel=0.12)
    assert result.to_dict()["mAP_se"] == noise["mAP"].se
    assert result.to_dict()["rank1_se"] == noise["rank1"].se
    other = result.bootstrap(resamples=500, seed=1)["mAP"]
    assert other.resamples == 500 and other.se != noise["mAP"].se
    assert other.se == pytest.approx(analytic_map, rel=0.12)


def test_bootstrap_of_constant_values_has_no_noise():
    est = bootstrap_means({"x": np.full(20, 0.25)})["x"]
    assert (est.mean, est.se, est.low, est.high) == (0.25, 0.0, 0.25, 0.25)
    assert est.to_dict()["resamples"] == 1000


@pytest.mark.parametrize(
    ("samples", "kwargs", "message"),
    [
        ({"x": [0.1, 0.2]}, {"resamples": 1}, "at least 2"),
        ({"x": [0.1, 0.2]}, {"resamples": 2.5}, "integer"),
        ({"x": [0.1, 0.2]}, {"level": 1.0}, "level"),
        ({}, {}, "at least one"),
        ({"x": []}, {}, "non-empty"),
        ({"x": [[0.1]]}, {}, "1-D"),
        ({"x": [0.1, np.nan]}, {}, "NaN"),
        ({"x": [0.1, 0.2], "y": [1.0]}, {}, "different lengths"),
    ],
)
def test_bootstrap_bad_input_raises_clear_error(samples, kwargs, message):
    with pytest.raises(KdasError, match=message):
        bootstrap_means(samples, **kwargs)
