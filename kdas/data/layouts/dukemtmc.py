"""DukeMTMC-reID (Zheng et al., ICCV 2017), as distributed in `DukeMTMC-reID.zip`.

    ROOT[/DukeMTMC-reID]/
        bounding_box_train/  0005_c2_f0046985.jpg ...   702 ids, 16,522 images
        bounding_box_test/   17,661 images: 702 test ids + 408 gallery-only (distractor) ids
        query/               2,228 images

Names are `<pid>_c<camera>_f<frame>.jpg`, cameras c1..c8. Duke has no `-1` junk and no `0000`
images: its distractors are real identities that appear only in the gallery.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdas.data.layouts._common import existing_root, find_market_root, market_style_splits
from kdas.data.records import ReIDSplits

NAME = "dukemtmc"
SUBFOLDER = "DukeMTMC-reID"
NUM_CAMERAS = 8
PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d)_f\d+\.jpe?g", re.IGNORECASE)
EXPECTED = f"ROOT[/{SUBFOLDER}]/{{bounding_box_train,bounding_box_test,query}}/0005_c2_f0046985.jpg"


def load(root: str | Path) -> ReIDSplits:
    """Load DukeMTMC-reID from its folder or the folder above it."""
    base = existing_root(root, NAME)
    found = find_market_root(NAME, [base, base / SUBFOLDER], EXPECTED)
    return market_style_splits(name=NAME, root=found, pattern=PATTERN, num_cameras=NUM_CAMERAS)
