"""What every layout shares: finding its folders, parsing names, relabelling, sanity checks.

Each layout module only states its folders and its one file-name regex; the rules (parse the
file name only, sorted lists, deterministic relabelling, junk dropped, distractors kept in the
gallery) live here so they cannot drift between data sets.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from kdas.constants import DISTRACTOR_PID, JUNK_PID
from kdas.data.records import ImageRecord, ReIDSplits
from kdas.errors import KdasError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def existing_root(root: str | Path, layout: str) -> Path:
    """The data set root as an absolute path; a clear error when it is not a folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise KdasError(f"{layout}: data set root {path} does not exist")
    if not path.is_dir():
        raise KdasError(f"{layout}: data set root {path} is not a folder")
    return path.resolve()


def pick_root(candidates: Sequence[Path], required: Sequence[str]) -> Path | None:
    """The first candidate folder that holds every required sub-folder, else None."""
    for candidate in candidates:
        if all((candidate / name).is_dir() for name in required):
            return candidate
    return None


MARKET_FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


def find_market_root(layout: str, candidates: Sequence[Path], expected: str) -> Path:
    """The first candidate that holds the three Market-1501 folders; else the error that names
    the first missing folder of the most complete candidate."""
    found = pick_root(candidates, MARKET_FOLDERS)
    if found is None:
        raise missing_folder_error(layout, candidates, MARKET_FOLDERS, expected)
    return found


def missing_folder_error(
    layout: str, candidates: Sequence[Path], required: Sequence[str], expected: str
) -> KdasError:
    """Name the first missing folder of the most complete candidate, and the expected tree."""
    best = max(candidates, key=lambda c: sum((c / name).is_dir() for name in required))
    missing = next(name for name in required if not (best / name).is_dir())
    return KdasError(f"{layout}: no folder {missing}/ in {best} (expected {expected})")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name.

    Other files (Thumbs.db in the Market-1501 zip) and hidden ones (macOS `._*` copies) are not
    images of the data set and are skipped rather than reported as unparseable.
    """
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def parse_name(
    pattern: re.Pattern[str], path: Path, layout: str, num_cameras: int | None
) -> tuple[int, int]:
    """(pid, 0-based camid) from the file name alone, or an error naming the file.

    The pattern has the named groups `pid` and `cam` (1-based camera, as every public data set
    writes it). Only the name is matched: a folder called `c3` above must not change the camera.
    """
    match = pattern.fullmatch(path.name)
    if match is None:
        raise KdasError(
            f"{layout}: file name {path.name!r} in {path.parent} does not match the {layout} "
            f"naming (pattern {pattern.pattern})"
        )
    pid, cam = int(match["pid"]), int(match["cam"])
    top = num_cameras if num_cameras is not None else cam
    if not 1 <= cam <= top:
        span = f"1..{num_cameras}" if num_cameras is not None else ">= 1"
        raise KdasError(f"{layout}: file {path} has camera {cam}, expected {span}")
    if pid < JUNK_PID:
        raise KdasError(f"{layout}: file {path} has identity {pid}, expected -1 or >= 0")
    return pid, cam - 1


def parse_folder(
    folder: Path, pattern: re.Pattern[str], layout: str, num_cameras: int | None
) -> list[ImageRecord]:
    """Every image of a folder as a record with its original pid (junk and distractors kept)."""
    return [
        ImageRecord(str(path), *parse_name(pattern, path, layout, num_cameras))
        for path in list_images(folder)
    ]


def relabel(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Map the original train ids, in sorted order, to 0..N-1 (never set or dict order)."""
    records = list(records)
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [r._replace(pid=mapping[r.pid]) for r in records]


def drop_special(
    records: Iterable[ImageRecord], split: str, keep_distractors: bool, dropped: Counter[str]
) -> list[ImageRecord]:
    """Drop junk (-1) always and distractors (0) unless kept; count what went."""
    kept = []
    for record in records:
        if record.pid == JUNK_PID:
            dropped[f"{split}_junk"] += 1
        elif record.pid == DISTRACTOR_PID and not keep_distractors:
            dropped[f"{split}_distractors"] += 1
        else:
            kept.append(record)
    return kept


def require_nonempty(records: Sequence[ImageRecord], split: str, where: Path, layout: str) -> None:
    if not records:
        raise KdasError(
            f"{layout}: the {split} split is empty (no usable images in {where}); "
            "check that the folder holds the data set's images"
        )


def query_coverage_warnings(
    query: Sequence[ImageRecord], gallery: Sequence[ImageRecord]
) -> list[str]:
    """Warn about queries the Market protocol cannot score.

    A query counts only if the gallery holds its identity in another camera; an identity that is
    absent, or present only in the query's own camera, has no positive and silently lowers the
    number of evaluated queries.
    """
    gallery_cams: dict[int, set[int]] = {}
    for record in gallery:
        gallery_cams.setdefault(record.pid, set()).add(record.camid)
    query_ids = {r.pid for r in query}
    absent = sorted(query_ids - gallery_cams.keys())
    warnings = []
    if absent:
        images = sum(r.pid in set(absent) for r in query)
        warnings.append(
            f"{len(absent)} of {len(query_ids)} query ids ({images} query images) have no image "
            f"in the gallery and cannot be evaluated (e.g. id {absent[0]})"
        )
    same_cam_only = [r for r in query if r.pid in gallery_cams and gallery_cams[r.pid] <= {r.camid}]
    if same_cam_only:
        warnings.append(
            f"{len(same_cam_only)} query images have gallery matches only in their own camera "
            "and cannot be evaluated (same-camera matches are excluded)"
        )
    return warnings


def market_style_splits(
    *,
    name: str,
    root: Path,
    pattern: re.Pattern[str],
    num_cameras: int | None,
    train_dir: Path | None = None,
    query_dir: Path | None = None,
    gallery_dir: Path | None = None,
    extra_gallery: Sequence[ImageRecord] = (),
) -> ReIDSplits:
    """Train/query/gallery from three folders of images named in the Market-1501 style; by
    default Market-1501's own: root/bounding_box_train, root/query, root/bounding_box_test."""
    train_dir = train_dir or root / "bounding_box_train"
    query_dir = query_dir or root / "query"
    gallery_dir = gallery_dir or root / "bounding_box_test"
    dropped: Counter[str] = Counter()
    train = drop_special(
        parse_folder(train_dir, pattern, name, num_cameras), "train", False, dropped
    )
    query = drop_special(
        parse_folder(query_dir, pattern, name, num_cameras), "query", False, dropped
    )
    gallery = drop_special(
        parse_folder(gallery_dir, pattern, name, num_cameras), "gallery", True, dropped
    )
    gallery.extend(extra_gallery)
    return finish_splits(
        name, root, train, query, gallery, dropped, train_dir, query_dir, gallery_dir
    )


def finish_splits(
    name: str,
    root: Path,
    train: list[ImageRecord],
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    dropped: Counter[str],
    train_where: Path,
    query_where: Path,
    gallery_where: Path,
) -> ReIDSplits:
    """Check for empty splits, relabel train, attach the warnings and the drop counts."""
    require_nonempty(train, "train", train_where, name)
    require_nonempty(query, "query", query_where, name)
    require_nonempty(gallery, "gallery", gallery_where, name)
    return ReIDSplits(
        name=name,
        root=str(root),
        train=relabel(train),
        query=query,
        gallery=gallery,
        warnings=query_coverage_warnings(query, gallery),
        dropped=dict(sorted(dropped.items())),
    )
