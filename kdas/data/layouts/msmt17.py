"""MSMT17 (Wei et al., CVPR 2018), V1 (original crops) or V2 (faces masked), auto-detected.

    ROOT[/MSMT17_V1]/  train/ test/                      list_{train,val,query,gallery}.txt
    ROOT[/MSMT17_V2]/  mask_train_v2/ mask_test_v2/      the same four lists

A list line is `<pid folder>/<file name> <pid>`, relative to the train or test folder
(list_train/list_val -> train, list_query/list_gallery -> test): 32,621 train+val images of
1,041 ids, 11,659 query and 82,161 gallery images of 3,060 ids. A file name reads
`<pid>_<index>_<camera>_<date><slot>_<frame>_<box>[_ex].jpg`, e.g.
`0000_000_01_0303morning_0015_0.jpg`; the camera is the third field, 1..15.

Two choices kdas makes:
- `merge_val=True` (default, common practice since the official val list is a 7% slice of the
  same 1,041 train ids): train on list_train + list_val. With False the val images are unused.
- Test ids start at 0 in the lists, but pid 0 marks a distractor in kdas records; query and
  gallery pids are therefore the list id + 1 (no MSMT17 image is a distractor).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from kdas.data.layouts._common import existing_root, finish_splits, parse_name
from kdas.data.records import ImageRecord, ReIDSplits
from kdas.errors import KdasError

NAME = "msmt17"
NUM_CAMERAS = 15
PATTERN = re.compile(
    r"(?P<pid>\d+)_\d+_(?P<cam>\d+)_\d{4}[a-z]+_\d+_\d+(?:_[a-z0-9]+)*\.jpe?g", re.IGNORECASE
)
VERSIONS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
EXPECTED = (
    "ROOT[/MSMT17_V1]/{train/,test/,list_train.txt,list_val.txt,list_query.txt,"
    "list_gallery.txt} or ROOT[/MSMT17_V2]/{mask_train_v2/,mask_test_v2/,list_*.txt}"
)


def detect(base: Path) -> tuple[Path, str]:
    """(folder, "V1" | "V2"): the root itself if it is an MSMT17 folder, else its one
    MSMT17_V1 / MSMT17_V2 / MSMT17 sub-folder."""
    found: list[tuple[Path, str]] = []
    for candidate in (base, base / "MSMT17_V1", base / "MSMT17_V2", base / "MSMT17"):
        for version, (train, test) in VERSIONS.items():
            if (candidate / train).is_dir() and (candidate / test).is_dir():
                found.append((candidate, version))
        if found and candidate == base:
            break
    if not found:
        raise KdasError(f"{NAME}: no MSMT17 train/test folders in {base} (expected {EXPECTED})")
    if len(found) > 1:
        where = ", ".join(f"{path} ({version})" for path, version in found)
        raise KdasError(f"{NAME}: several MSMT17 copies found: {where}; pass the one you mean")
    return found[0]


def read_list(list_path: Path, split_dir: Path, root: Path) -> list[tuple[Path, int, int]]:
    """(image path, list pid, 0-based camid) per line; errors name the file and line."""
    if not list_path.is_file():
        raise KdasError(f"{NAME}: list file {list_path} is missing (expected {EXPECTED})")
    items = []
    lines = list_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise KdasError(
                f"{NAME}: {list_path.name} line {number} is {line!r}, expected "
                "'<folder>/<file name> <pid>'"
            )
        relative, pid = fields[0], int(fields[1])
        path = split_dir / relative
        if not path.is_file() and (root / relative).is_file():
            path = root / relative  # a list written relative to the data set root
        if not path.is_file():
            raise KdasError(f"{NAME}: {list_path.name} line {number}: image {path} not found")
        name_pid, camid = parse_name(PATTERN, path, NAME, NUM_CAMERAS)
        if name_pid != pid:
            raise KdasError(
                f"{NAME}: {list_path.name} line {number}: the list says pid {pid} but the file "
                f"name {path.name} says {name_pid}"
            )
        items.append((path, pid, camid))
    return items


def load(root: str | Path, *, merge_val: bool = True) -> ReIDSplits:
    """Load MSMT17 V1 or V2; `merge_val` trains on list_train + list_val (the usual choice)."""
    base = existing_root(root, NAME)
    found, version = detect(base)
    train_dir, test_dir = (found / name for name in VERSIONS[version])
    train_list, val_list, query_list, gallery_list = (found / name for name in LISTS)

    dropped: Counter[str] = Counter()
    train_items = read_list(train_list, train_dir, found)
    val_items = read_list(val_list, train_dir, found)
    if merge_val:
        train_items += val_items
    else:
        dropped["train_val_unused"] = len(val_items)

    def test_records(items: list[tuple[Path, int, int]]) -> list[ImageRecord]:
        return [ImageRecord(str(path), pid + 1, camid) for path, pid, camid in items]

    return finish_splits(
        f"{NAME}-{version.lower()}",
        found,
        [ImageRecord(str(path), pid, camid) for path, pid, camid in train_items],
        test_records(read_list(query_list, test_dir, found)),
        test_records(read_list(gallery_list, test_dir, found)),
        dropped,
        train_list,
        query_list,
        gallery_list,
    )
