"""Data set layouts by name: `load_dataset(root, "market1501")` and friends.

One module per layout states its folders and its file-name regex; this registry is the only
place that knows the names. Adding a layout is one module and one line here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdas.constants import DEFAULT_LAYOUT
from kdas.data.layouts import cuhk03, dukemtmc, folder, market1501, msmt17
from kdas.data.records import ReIDSplits
from kdas.errors import KdasError

LAYOUTS: dict[str, Callable[..., ReIDSplits]] = {
    market1501.NAME: market1501.load,
    dukemtmc.NAME: dukemtmc.load,
    cuhk03.NAME: cuhk03.load,
    msmt17.NAME: msmt17.load,
    folder.NAME: folder.load,
}


def layout_options(layout: str) -> dict[str, Any]:
    """The options a layout accepts, with their defaults (for help texts and errors)."""
    loader = _loader(layout)
    return {
        name: param.default
        for name, param in inspect.signature(loader).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _loader(layout: str) -> Callable[..., ReIDSplits]:
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise KdasError(
            f"unknown data set layout {layout!r} (known: {', '.join(LAYOUTS)})"
        ) from None


def load_dataset(root: str | Path, layout: str = DEFAULT_LAYOUT, **options: Any) -> ReIDSplits:
    """Read a data set into train/query/gallery records; options are the layout's own
    (market1501: include_distractors; cuhk03: variant; msmt17: merge_val)."""
    loader = _loader(layout)
    known = layout_options(layout)
    for name in options:
        if name not in known:
            accepted = ", ".join(known) if known else "none"
            raise KdasError(f"layout {layout} has no option {name!r} (its options: {accepted})")
    return loader(root, **options)


__all__ = ["LAYOUTS", "layout_options", "load_dataset"]
