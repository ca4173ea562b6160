"""Images on disk as a torch Dataset of `(image, pid, camid, index)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from kdas.data.records import ImageRecord
from kdas.images import drop_unreadable, read_image

__all__ = ["ReIDImageDataset", "read_image"]  # read_image: kdas.images, re-exported


class ReIDImageDataset(Dataset):
    """Records as a Dataset; `index` in each item is the position in `self.records`.

    With `skip_corrupt=True` every image is decoded once up front and unreadable ones are
    dropped with one warning that counts them (their paths stay in `self.skipped`); otherwise
    a bad image raises KdasError when it is read.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Image.Image], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.transform = transform
        self.skipped: list[str] = []
        kept = list(records)
        if skip_corrupt:
            kept, self.skipped = drop_unreadable(records, lambda record: record.path)
        self.records: list[ImageRecord] = kept

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, int, int, int]:
        """`index`, or `(index, seed)` from a seeded sampler: then the random augmentation is a
        function of the seed alone, whichever process or worker draws it, and however the job
        was interrupted and resumed."""
        seed = None
        if isinstance(index, tuple):
            index, seed = index
        record = self.records[index]
        image = read_image(record.path)
        if self.transform is not None:
            if seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    image = self.transform(image)
        return image, record.pid, record.camid, index
