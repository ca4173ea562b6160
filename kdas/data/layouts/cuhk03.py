"""CUHK03-NP: CUHK03 (Li et al., CVPR 2014) under the new 767/700 protocol (Zhong et al.,
CVPR 2017), as released in the Market-1501 layout.

    ROOT[/cuhk03-np]/{labeled,detected}/
        bounding_box_train/  0001_c1_1.png ...   767 ids, 7,368 labeled / 7,365 detected
        bounding_box_test/   700 ids, 5,328 labeled / 5,332 detected
        query/               1,400 images (one per id and camera view)

Names are `<pid>_c<view>_<index>.png`; CUHK03 pairs two camera views per identity, so the
camera is c1 or c2. `variant` picks the hand-labelled or the DPM-detected boxes; ROOT may also
be one of the two variant folders itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from kdas.data.layouts._common import (
    MARKET_FOLDERS,
    existing_root,
    find_market_root,
    market_style_splits,
    pick_root,
)
from kdas.data.records import ReIDSplits
from kdas.errors import KdasError

NAME = "cuhk03"
SUBFOLDER = "cuhk03-np"
VARIANTS = ("labeled", "detected")
NUM_CAMERAS = 2
PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d)_\d+\.(?:png|jpe?g)", re.IGNORECASE)


def load(root: str | Path, *, variant: Literal["labeled", "detected"] = "labeled") -> ReIDSplits:
    """Load one variant of CUHK03-NP from `cuhk03-np/`, its parent, or the variant folder."""
    if variant not in VARIANTS:
        raise KdasError(f"{NAME}: variant {variant!r} is not one of 'labeled', 'detected'")
    base = existing_root(root, NAME)
    other = VARIANTS[1 - VARIANTS.index(variant)]
    if base.name == other and pick_root([base], MARKET_FOLDERS) is not None:
        raise KdasError(
            f"{NAME}: {base} is the {other} variant but variant={variant!r} was asked; "
            f"pass its parent folder, or variant={other!r}"
        )
    expected = (
        f"ROOT[/{SUBFOLDER}]/{variant}/{{bounding_box_train,bounding_box_test,query}}/0001_c1_1.png"
    )
    found = find_market_root(NAME, [base / variant, base / SUBFOLDER / variant, base], expected)
    splits = market_style_splits(name=NAME, root=found, pattern=PATTERN, num_cameras=NUM_CAMERAS)
    splits.name = f"{NAME}-{variant}"
    return splits
