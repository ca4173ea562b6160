"""A validation split carved out of the training identities, for choices a protocol must not
make on the test split (which epoch to keep, when to stop).

The held-out identities leave the training set entirely (their images are not trained on, their
classes do not exist), so validation mimics the test: unseen people, cross-camera retrieval. The
split depends only on the data set and `seed`, never on the run's seed, so a teacher, a search
and a student trained on the same data config see the same training classes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

from kdas.data.layouts._common import relabel
from kdas.data.records import ImageRecord, ReIDSplits
from kdas.errors import KdasError

MIN_TRAIN_IDS = 2  # what a P×K sampler and a classifier need at the very least


def held_out_count(num_ids: int, fraction: float) -> int:
    """How many identities `fraction` holds out: at least 2 (one query needs another identity
    in the gallery to be a retrieval problem), unless the fraction is 0."""
    if fraction <= 0:
        return 0
    return max(2, round(num_ids * fraction))


def _queries_and_gallery(
    records: list[ImageRecord],
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Per identity and camera the first image (by path) is a query, the rest gallery; an
    identity seen by one camera only stays in the gallery, as a distractor, since the
    evaluation ignores same-camera matches."""
    by_id: dict[int, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_id[record.pid].append(record)
    query: list[ImageRecord] = []
    gallery: list[ImageRecord] = []
    for pid in sorted(by_id):
        mine = sorted(by_id[pid], key=lambda r: r.path)
        cameras = {r.camid for r in mine}
        seen: set[int] = set()
        for record in mine:
            if len(cameras) > 1 and record.camid not in seen:
                seen.add(record.camid)
                query.append(record)
            else:
                gallery.append(record)
    return query, gallery


def hold_out_validation(splits: ReIDSplits, fraction: float, seed: int = 0) -> ReIDSplits:
    """`splits` with `fraction` of its training identities moved to `val_query`/`val_gallery`
    (original pids kept there, the rest relabelled 0..N-1). A fraction of 0 returns `splits`."""
    if not 0.0 <= fraction < 1.0:
        raise KdasError(f"data.val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return splits
    ids = sorted({r.pid for r in splits.train})
    count = held_out_count(len(ids), fraction)
    if len(ids) - count < MIN_TRAIN_IDS:
        raise KdasError(
            f"data.val_fraction {fraction} would hold out {count} of the {len(ids)} training "
            f"identities of {splits.root}, leaving fewer than {MIN_TRAIN_IDS} to train on; "
            "lower it or set data.val_fraction = 0"
        )
    held = set(random.Random(seed).sample(ids, count))
    train = [r for r in splits.train if r.pid not in held]
    val = [r for r in splits.train if r.pid in held]
    # relabelled training pids are class indices; keep the validation ones distinct from 0
    # (0 marks a distractor in query and gallery)
    val = [r._replace(pid=r.pid + 1) for r in val]
    query, gallery = _queries_and_gallery(val)
    if not query:
        raise KdasError(
            f"the {count} validation identities of {splits.root} are each seen by one camera "
            "only: no cross-camera query can be formed; raise data.val_fraction or set it to 0"
        )
    return replace(splits, train=relabel(train), val_query=query, val_gallery=gallery)


def validation_view(splits: ReIDSplits) -> ReIDSplits:
    """The validation split as query/gallery, so evaluation code reads it like the test."""
    return replace(splits, query=splits.val_query, gallery=splits.val_gallery)
