"""The records every layout returns and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class ImageRecord(NamedTuple):
    """One image: its path, identity and camera.

    In `train`, pid is the relabelled class index 0..N-1 (sorted original ids); in `query` and
    `gallery` it is the original id (0 marks a distractor), in `val_query`/`val_gallery` a
    held-out class index + 1. camid is 0-based.
    """

    path: str
    pid: int
    camid: int


@dataclass
class ReIDSplits:
    """A Re-ID data set as three record lists, plus what the loader noticed.

    `dropped` counts images the loader left out on purpose, keyed by split and reason
    (`gallery_junk`, `query_junk`, `train_distractors`, `train_val_unused`...), so reports can
    say what was not used.
    """

    name: str
    root: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    # training identities held out for choices made during training (`kdas.data.validation`)
    val_query: list[ImageRecord] = field(default_factory=list)
    val_gallery: list[ImageRecord] = field(default_factory=list)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_query)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_cameras(self) -> int:
        return len({r.camid for r in (*self.train, *self.query, *self.gallery)})
