"""Identity-balanced batches (P identities x K images), the search split, endless streams.

Everything here is a pure function of (seed, epoch): an epoch's batches can be rebuilt at any
time, which is what makes mid-epoch resumption and DDP sharding exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from kdas.data.records import ImageRecord
from kdas.errors import KdasError


def _pids_of(items: Sequence[int] | Sequence[ImageRecord]) -> list[int]:
    return [int(item.pid) if isinstance(item, ImageRecord) else int(item) for item in items]


def item_seed(seed: int, epoch: int, batch: int, slot: int) -> int:
    """The augmentation seed of one image of one batch: a pure function of where it is."""
    return int(np.random.SeedSequence([seed, epoch, batch, slot]).generate_state(1)[0])


class PKSampler(Sampler[list[Any]]):
    """A batch sampler: each batch holds `p` distinct identities with `k` images each.

    Within an epoch identities are visited in shuffled rounds (each identity once per round) and
    each identity's images in shuffled order, so images are seen evenly; an identity with fewer
    than `k` images gives all of them plus draws with replacement to fill `k`.

    An epoch is `batches_per_epoch` batches for the whole job (default: about one pass over the
    images, `len(pids) // (p * k)`, at least 1), rounded up to a multiple of `num_replicas`;
    rank r takes batches r, r + num_replicas, ... so ranks get disjoint shares of equal length.
    `set_epoch(e)` selects the batches of epoch e; `state_dict()` records the epoch and how
    many batches this rank has yielded, and `load_state_dict()` resumes right there. With
    `item_seeds`, batches hold `(index, seed)` pairs whose seed fixes that image's random
    augmentation (see `ReIDImageDataset`), so a resumed or sharded job sees the same pixels.
    """

    def __init__(
        self,
        pids: Sequence[int] | Sequence[ImageRecord],
        p: int = 8,
        k: int = 4,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        item_seeds: bool = False,
    ) -> None:
        labels = _pids_of(pids)
        if p < 1 or k < 1:
            raise KdasError(f"P x K sampler needs p >= 1 and k >= 1, got p={p}, k={k}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise KdasError(f"bad DDP placement: rank {rank} of {num_replicas} replicas")
        by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(labels):
            by_pid.setdefault(pid, []).append(index)
        if len(by_pid) < p:
            raise KdasError(
                f"P x K sampler needs at least p={p} identities, the data has {len(by_pid)}; "
                "lower p or use more identities"
            )
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise KdasError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
        self.p, self.k, self.seed = p, k, seed
        self.item_seeds = item_seeds
        self.num_replicas, self.rank = num_replicas, rank
        self._pids = sorted(by_pid)
        self._indices = [np.asarray(by_pid[pid], dtype=np.int64) for pid in self._pids]
        total = batches_per_epoch or max(1, len(labels) // (p * k))
        self.batches_per_rank = math.ceil(total / num_replicas)
        self.epoch = 0
        self.position = 0  # batches this rank has yielded in the current epoch
        self._resume_at = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return self.batches_per_rank

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s batches; a resumed position is kept if it is the same epoch."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0
            self._resume_at = 0

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch` for the whole job, before sharding to ranks."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        count = len(self._pids)
        pools = [rng.permutation(idx) for idx in self._indices]
        cursors = [0] * count
        order: list[int] = list(rng.permutation(count))
        batches = []
        for _ in range(self.batches_per_rank * self.num_replicas):
            chosen: list[int] = []
            while len(chosen) < self.p:
                if not order:  # next round over all identities
                    order = list(rng.permutation(count))
                candidate = next((c for c in order if c not in chosen), None)
                if candidate is None:  # the round's rest is already in this batch
                    order = list(rng.permutation(count))
                    continue
                order.remove(candidate)
                chosen.append(int(candidate))
            batch: list[int] = []
            for c in chosen:
                pool = self._indices[c]
                if len(pool) < self.k:
                    extra = rng.choice(pool, size=self.k - len(pool), replace=True)
                    batch.extend(int(i) for i in rng.permutation(np.concatenate([pool, extra])))
                    continue
                if cursors[c] + self.k > len(pool):  # this identity's images all seen: reshuffle
                    pools[c] = rng.permutation(pool)
                    cursors[c] = 0
                batch.extend(int(i) for i in pools[c][cursors[c] : cursors[c] + self.k])
                cursors[c] += self.k
            batches.append(batch)
        self._cache = (epoch, batches)
        return batches

    def rank_batches(self, epoch: int) -> list[list[int]]:
        return self.epoch_batches(epoch)[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[Any]]:
        start, self._resume_at = self._resume_at, 0
        batches = self.rank_batches(self.epoch)
        self.position = start
        for offset, batch in enumerate(batches[start:], start=start):
            self.position += 1
            if not self.item_seeds:
                yield list(batch)
                continue
            job_batch = self.rank + offset * self.num_replicas  # its number in the whole job
            yield [
                (int(i), item_seed(self.seed, self.epoch, job_batch, j))
                for j, i in enumerate(batch)
            ]

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "batches_per_rank": self.batches_per_rank,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at `state`'s epoch and position; the sampler's settings must be the same."""
        for key in ("seed", "num_replicas", "batches_per_rank"):
            if key in state and state[key] != getattr(self, key):
                raise KdasError(
                    f"cannot resume the P x K sampler: {key} was {state[key]}, "
                    f"now {getattr(self, key)}"
                )
        position = int(state["position"])
        if not 0 <= position <= self.batches_per_rank:
            raise KdasError(f"cannot resume the P x K sampler at batch {position} of {len(self)}")
        self.epoch = int(state["epoch"])
        self.position = position
        self._resume_at = position


def search_split(
    records: Sequence[ImageRecord], seed: int = 0
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split train records 50/50 by image within each identity, for the bi-level search.

    Every identity with >= 2 images lands in both halves (odd counts give the extra image to
    the first half), so the classifier and the teacher's logits are valid on both. An identity
    with a single image goes to the first (weight-training) half only. Records keep their
    pids and their original order within each half.
    """
    rng = np.random.default_rng([seed, 0x5E])
    by_pid: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        by_pid.setdefault(record.pid, []).append(index)
    first, second = [], []
    for pid in sorted(by_pid):
        indices = rng.permutation(by_pid[pid])
        cut = math.ceil(len(indices) / 2)
        first.extend(int(i) for i in indices[:cut])
        second.extend(int(i) for i in indices[cut:])
    return [records[i] for i in sorted(first)], [records[i] for i in sorted(second)]


class BatchStream:
    """An endless, resumable stream of batches: `next(stream)` runs across epochs.

    It wraps a DataLoader over `sampler`, moves to the next epoch when one ends, and counts the
    batches it has handed out, so `state_dict()` is exact even while DataLoader workers
    prefetch ahead. Batch indices resume exactly, and so do augmentations when the sampler
    was made with `item_seeds=True`.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: PKSampler,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.sampler = sampler
        self.loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_fn,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )
        self.epoch = sampler.epoch
        self.position = sampler._resume_at
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        if self.position >= len(self.sampler):
            self.epoch += 1
            self.position = 0
            self.sampler.set_epoch(self.epoch)
            self._iterator = None
        if self._iterator is None:
            self.sampler.load_state_dict({"epoch": self.epoch, "position": self.position})
            self._iterator = iter(self.loader)
        batch = next(self._iterator)
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from `state`: the next batch is the one after the last consumed one."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._iterator = None
