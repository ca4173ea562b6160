"""P x K batches, the search split and the endless batch stream: invariants and exact resume."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset

from kdas.data.records import ImageRecord
from kdas.data.samplers import BatchStream, PKSampler, search_split
from kdas.errors import KdasError


def _pids(counts: dict[int, int]) -> list[int]:
    """A label per dataset index, identities interleaved so indices are not grouped."""
    labels, left = [], dict(counts)
    while any(left.values()):
        for pid in sorted(left):
            if left[pid]:
                labels.append(pid)
                left[pid] -= 1
    return labels


def test_batches_hold_p_distinct_ids_with_k_images_each():
    labels = _pids({pid: 8 for pid in range(10)})
    sampler = PKSampler(labels, p=4, k=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 80 // 8
    for batch in batches:
        ids = Counter(labels[i] for i in batch)
        assert len(batch) == 8 and len(ids) == 4 and set(ids.values()) == {2}
        assert len(set(batch)) == 8  # enough images: no repeats inside a batch


def test_images_are_seen_evenly_within_an_epoch():
    labels = _pids({pid: 8 for pid in range(6)})  # 8 images = two whole K=4 draws
    sampler = PKSampler(labels, p=3, k=4, seed=0, batches_per_epoch=16)
    seen = Counter(i for batch in sampler for i in batch)
    for pid in range(6):
        counts = [seen[i] for i, label in enumerate(labels) if label == pid]
        assert max(counts) - min(counts) <= 1
    # identities are visited in rounds: their visit counts differ by at most one
    visits = Counter(labels[b[j]] for b in sampler.epoch_batches(0) for j in range(0, 12, 4))
    assert max(visits.values()) - min(visits.values()) <= 1


def test_small_identities_are_drawn_with_replacement():
    labels = _pids({0: 1, 1: 2, 2: 5, 3: 6})
    sampler = PKSampler(labels, p=4, k=4, seed=0, batches_per_epoch=5)
    for batch in sampler:
        by_id: dict[int, list[int]] = {}
        for index in batch:
            by_id.setdefault(labels[index], []).append(index)
        assert {pid: len(v) for pid, v in by_id.items()} == {0: 4, 1: 4, 2: 4, 3: 4}
        only = labels.index(0)
        assert by_id[0] == [only] * 4
        # an identity with fewer than K images shows every one of them
        assert set(by_id[1]) == {i for i, label in enumerate(labels) if label == 1}


def test_epochs_are_deterministic_and_differ():
    labels = _pids({pid: 5 for pid in range(12)})
    a, b = PKSampler(labels, p=4, k=2, seed=7), PKSampler(labels, p=4, k=2, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(PKSampler(labels, p=4, k=2, seed=8)) != first


def test_default_and_configured_epoch_length():
    labels = _pids({pid: 3 for pid in range(20)})
    assert len(PKSampler(labels, p=4, k=4)) == 60 // 16
    assert len(PKSampler(labels, p=4, k=4, batches_per_epoch=7)) == 7
    assert len(PKSampler(list(range(5)), p=4, k=4)) == 1  # fewer images than a batch: still 1


def test_ddp_ranks_get_disjoint_equal_shares_of_one_sequence():
    labels = _pids({pid: 4 for pid in range(9)})
    ranks = [
        PKSampler(labels, p=3, k=2, seed=5, batches_per_epoch=10, num_replicas=3, rank=r)
        for r in range(3)
    ]
    assert [len(s) for s in ranks] == [4, 4, 4]  # 10 rounded up to a multiple of 3
    shares = [list(s) for s in ranks]
    single = list(PKSampler(labels, p=3, k=2, seed=5, batches_per_epoch=12))
    interleaved = [shares[n % 3][n // 3] for n in range(12)]
    assert interleaved == single  # the ranks split one sequence position by position


def test_resume_mid_epoch_yields_the_same_remaining_batches():
    labels = _pids({pid: 6 for pid in range(10)})
    sampler = PKSampler(labels, p=4, k=3, seed=2, batches_per_epoch=6)
    sampler.set_epoch(3)
    full = list(sampler)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(2)]
    state = sampler.state_dict()
    assert head == full[:2] and state["epoch"] == 3 and state["position"] == 2

    resumed = PKSampler(labels, p=4, k=3, seed=2, batches_per_epoch=6)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # a training loop calling set_epoch for the resumed epoch keeps it
    assert list(resumed) == full[2:]
    assert list(resumed) == full  # the next pass over that epoch starts from the top


def test_sampler_errors_are_clear():
    with pytest.raises(KdasError, match=r"needs at least p=8 identities, the data has 3"):
        PKSampler([0, 1, 2, 0, 1, 2], p=8, k=2)
    with pytest.raises(KdasError, match=r"bad DDP placement: rank 2 of 2"):
        PKSampler(list(range(8)), p=2, k=2, num_replicas=2, rank=2)
    sampler = PKSampler(list(range(8)), p=2, k=2, seed=0)
    with pytest.raises(KdasError, match=r"seed was 1, now 0"):
        sampler.load_state_dict({"epoch": 0, "position": 0, "seed": 1})


def test_sampler_accepts_records():
    records = [ImageRecord(f"{i}.jpg", i % 4, 0) for i in range(16)]
    assert list(PKSampler(records, p=2, k=2)) == list(PKSampler([r.pid for r in records], 2, 2))


def test_search_split_halves_each_identity():
    counts = {0: 1, 1: 2, 2: 5, 3: 8}
    records = [ImageRecord(f"{i}.jpg", pid, i % 3) for i, pid in enumerate(_pids(counts))]
    first, second = search_split(records, seed=4)
    assert sorted(first + second) == sorted(records) and not set(first) & set(second)
    for pid, n in counts.items():
        a, b = sum(r.pid == pid for r in first), sum(r.pid == pid for r in second)
        assert (a, b) == ((n + 1) // 2, n // 2)  # the single-image id goes to the first half
    assert first == [r for r in records if r in set(first)]  # original order kept
    assert search_split(records, seed=4) == (first, second)
    assert search_split(records, seed=5) != (first, second)


class _Indices(Dataset):
    """Items are their own index, so a batch shows exactly which indices were drawn."""

    def __len__(self) -> int:
        return 60

    def __getitem__(self, index: int) -> int:
        return index


def _stream(num_workers: int = 0) -> tuple[BatchStream, PKSampler]:
    labels = [i % 10 for i in range(60)]
    sampler = PKSampler(labels, p=2, k=3, seed=9, batches_per_epoch=4)
    return BatchStream(_Indices(), sampler, num_workers=num_workers), sampler


def test_batch_stream_runs_across_epochs():
    stream, sampler = _stream()
    got = [next(stream).tolist() for _ in range(10)]
    expected = [b for e in range(3) for b in sampler.epoch_batches(e)][:10]
    assert got == expected
    assert stream.state_dict() == {"epoch": 2, "position": 2}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batch_stream_resumes_exactly(num_workers):
    stream, _ = _stream(num_workers)
    reference = [next(stream).tolist() for _ in range(11)]
    stream, _ = _stream(num_workers)
    for _ in range(6):  # workers prefetch ahead; the state counts what was handed out
        next(stream)
    state = stream.state_dict()
    resumed, _ = _stream(num_workers)
    resumed.load_state_dict(state)
    assert [next(resumed).tolist() for _ in range(5)] == reference[6:]
    assert isinstance(next(resumed), torch.Tensor)
