"""Any data set in the Market-1501 naming, for custom data.

    ROOT/
        train/   or bounding_box_train/   <pid>_c<camera>[anything].<jpg|jpeg|png|bmp>
        query/
        gallery/ or bounding_box_test/

The name must start with the identity (digits, `-1` for junk, `0` for distractors) and the
camera (`c` and its 1-based number, any number of digits); the rest of the name is free.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdas.data.layouts._common import existing_root, market_style_splits
from kdas.data.records import ReIDSplits
from kdas.errors import KdasError

NAME = "folder"
PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)(?:\D.*)?\.(?:jpe?g|png|bmp)", re.IGNORECASE)
CHOICES = {
    "train": ("train", "bounding_box_train"),
    "query": ("query",),
    "gallery": ("gallery", "bounding_box_test"),
}
EXPECTED = "ROOT/{train|bounding_box_train, query, gallery|bounding_box_test}/0001_c1_anything.jpg"


def _find(base: Path, split: str) -> Path:
    for name in CHOICES[split]:
        if (base / name).is_dir():
            return base / name
    raise KdasError(
        f"{NAME}: no folder {' or '.join(n + '/' for n in CHOICES[split])} in {base} "
        f"(expected {EXPECTED})"
    )


def load(root: str | Path) -> ReIDSplits:
    """Load a custom data set whose three folders hold Market-style file names."""
    base = existing_root(root, NAME)
    return market_style_splits(
        name=NAME,
        root=base,
        train_dir=_find(base, "train"),
        query_dir=_find(base, "query"),
        gallery_dir=_find(base, "gallery"),
        pattern=PATTERN,
        num_cameras=None,
    )
