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

from kdas.constants import JUNK_PID
from kdas.data.layouts._common import existing_root, list_images, market_style_splits, parse_name
from kdas.data.records import ImageRecord, ReIDSplits
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


def market_name(path: str | Path) -> tuple[int, int] | None:
    """(pid, 0-based camid) of a Market-style file name, or None when it is not one."""
    path = Path(path)
    if PATTERN.fullmatch(path.name) is None:
        return None
    return parse_name(PATTERN, path, NAME, None)


def image_records(
    paths: list[Path], pid: int | None = None, camid: int | None = None
) -> list[ImageRecord]:
    """Records for loose images: the given pid/camid, else those of the Market-style name."""
    records = []
    for path in paths:
        parsed = market_name(path) if pid is None or camid is None else (pid, camid)
        if parsed is None:
            raise KdasError(
                f"cannot tell the identity and camera of {path}: name it in the Market style "
                "(0001_c1_anything.jpg) or pass --pid and --camid"
            )
        records.append(
            ImageRecord(
                str(Path(path).resolve()),
                parsed[0] if pid is None else pid,
                parsed[1] if camid is None else camid,
            )
        )
    return records


def folder_records(folder: str | Path) -> list[ImageRecord]:
    """Every Market-named image directly in one folder (junk left out), e.g. a gallery."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KdasError(f"folder {folder} does not exist")
    images = list_images(folder)
    if not images:
        raise KdasError(
            f"{folder} holds no images; pass a folder of Market-named images, or a data set "
            "root with --layout"
        )
    return [r for r in image_records(images) if r.pid != JUNK_PID]
