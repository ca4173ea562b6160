"""What a loaded data set holds, as plain numbers for the CLI table and the HTML report."""

from __future__ import annotations

from typing import Any

from kdas.constants import DISTRACTOR_PID
from kdas.data.records import ImageRecord, ReIDSplits


def _split_summary(records: list[ImageRecord], relabelled: bool = False) -> dict[str, int]:
    # relabelled train pids run 0..N-1, so there 0 is a class, not a distractor
    people = records if relabelled else [r for r in records if r.pid != DISTRACTOR_PID]
    return {
        "ids": len({r.pid for r in people}),
        "images": len(records),
        "cameras": len({r.camid for r in records}),
        "distractors": len(records) - len(people),
    }


def summarize(splits: ReIDSplits) -> dict[str, Any]:
    """Ids, images and cameras per split, distractors, dropped junk and the loader's warnings.

    Ids exclude distractors (pid 0). Train is summarised from relabelled records, so its ids
    are the number of classes.
    """
    query_ids = {r.pid for r in splits.query}
    gallery_ids = {r.pid for r in splits.gallery if r.pid != DISTRACTOR_PID}
    return {
        "name": splits.name,
        "root": splits.root,
        "splits": {
            "train": _split_summary(splits.train, relabelled=True),
            "query": _split_summary(splits.query),
            "gallery": _split_summary(splits.gallery),
        },
        "num_classes": splits.num_train_pids,
        "cameras": splits.num_cameras,
        "query_ids_in_gallery": len(query_ids & gallery_ids),
        "gallery_only_ids": len(gallery_ids - query_ids),
        "dropped": dict(splits.dropped),
        "warnings": list(splits.warnings),
    }
