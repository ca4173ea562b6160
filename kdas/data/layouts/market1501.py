"""Market-1501 (Zheng et al., ICCV 2015), as distributed in `Market-1501-v15.09.15.zip`.

    ROOT[/Market-1501-v15.09.15]/
        bounding_box_train/  0002_c1s1_000451_03.jpg ...   751 ids, 12,936 images
        bounding_box_test/   19,732 images: 750 ids, `0000_*` distractors, `-1_*` junk
        query/               3,368 images, one per (id, camera) for some cameras
        images/              optional: the 500k distractor set, added to the gallery as pid 0

Names are `<pid>_c<camera>s<sequence>_<frame>_<box>.jpg`; pid is 4 digits, `0000` for a false
detection (a distractor, kept in the gallery as a negative) or `-1` for junk (dropped). Cameras
c1..c6. With junk dropped the gallery holds 15,913 images.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdas.constants import DISTRACTOR_PID
from kdas.data.layouts._common import (
    existing_root,
    find_market_root,
    market_style_splits,
    parse_folder,
)
from kdas.data.records import ReIDSplits
from kdas.errors import KdasError

NAME = "market1501"
SUBFOLDER = "Market-1501-v15.09.15"
NUM_CAMERAS = 6
PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d)s\d+_\d+_\d+\.jpe?g", re.IGNORECASE)
EXPECTED = (
    f"ROOT[/{SUBFOLDER}]/{{bounding_box_train,bounding_box_test,query}}/0002_c1s1_000451_03.jpg"
)


def load(root: str | Path, *, include_distractors: bool = False) -> ReIDSplits:
    """Load Market-1501; `include_distractors` adds the `images/` 500k set to the gallery."""
    base = existing_root(root, NAME)
    found = find_market_root(NAME, [base, base / SUBFOLDER], EXPECTED)
    extra = []
    if include_distractors:
        folder = found / "images"
        if not folder.is_dir():
            raise KdasError(
                f"{NAME}: include_distractors needs the 500k distractor images in {folder}/ "
                "(unpack distractors_500k.zip there, or leave the option off)"
            )
        extra = [
            r._replace(pid=DISTRACTOR_PID) for r in parse_folder(folder, PATTERN, NAME, NUM_CAMERAS)
        ]
    return market_style_splits(
        name=NAME, root=found, pattern=PATTERN, num_cameras=NUM_CAMERAS, extra_gallery=extra
    )
