"""What each gallery vector is (path, identity, camera, when added), kept beside the index.

In memory the table is columnar (numpy arrays sorted by id) so search can filter thousands of
candidates by camera with one vectorised lookup; on disk it is SQLite, which any tool can read.
Ids are 64-bit, handed out in increasing order and never reused, so the arrays stay sorted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kdas.errors import KdasError

SCHEMA_VERSION = 1


class GalleryRecord(NamedTuple):
    """A gallery image as the index knows it (same fields as kdas.data.records.ImageRecord)."""

    path: str
    pid: int
    camid: int


def as_record(item: Any) -> GalleryRecord:
    """Accept ImageRecord-likes (attributes) and plain (path, pid, camid) tuples."""
    if hasattr(item, "path") and hasattr(item, "pid") and hasattr(item, "camid"):
        return GalleryRecord(str(item.path), int(item.pid), int(item.camid))
    try:
        path, pid, camid = item
    except (TypeError, ValueError):
        raise KdasError(f"gallery record {item!r} is not (path, pid, camid)") from None
    return GalleryRecord(str(path), int(pid), int(camid))


@dataclass(frozen=True)
class GalleryTable:
    """Immutable columns; add/remove return a new table so readers never see a half change."""

    ids: np.ndarray  # int64, strictly increasing
    pids: np.ndarray  # int64
    camids: np.ndarray  # int64
    added: np.ndarray  # float64 unix seconds
    paths: tuple[str, ...]

    @classmethod
    def empty(cls) -> GalleryTable:
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
            np.empty(0, np.float64), (),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each id and whether it is present (-1 ids from faiss are never present)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        rows = np.searchsorted(self.ids, ids)
        rows = np.minimum(rows, len(self.ids) - 1)
        return rows, self.ids[rows] == ids

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self.rows_of(ids)[1]

    def record(self, row: int) -> GalleryRecord:
        return GalleryRecord(self.paths[row], int(self.pids[row]), int(self.camids[row]))

    def append(
        self, ids: np.ndarray, records: Sequence[GalleryRecord], added: float
    ) -> GalleryTable:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and len(self.ids) and ids[0] <= self.ids[-1]:
            raise KdasError("internal: new gallery ids must be larger than existing ones")
        return GalleryTable(
            np.concatenate([self.ids, ids]),
            np.concatenate([self.pids, np.array([r.pid for r in records], np.int64)]),
            np.concatenate([self.camids, np.array([r.camid for r in records], np.int64)]),
            np.concatenate([self.added, np.full(len(ids), added, np.float64)]),
            self.paths + tuple(r.path for r in records),
        )

    def without(self, ids: Iterable[int]) -> GalleryTable:
        drop = np.isin(self.ids, np.fromiter(ids, dtype=np.int64))
        keep = ~drop
        return GalleryTable(
            self.ids[keep], self.pids[keep], self.camids[keep], self.added[keep],
            tuple(p for p, k in zip(self.paths, keep, strict=True) if k),
        )  # fmt: skip


def write_sqlite(table: GalleryTable, path: Path) -> None:
    """Write a fresh database file (the caller writes into a temp folder that is swapped in)."""
    if path.exists():
        path.unlink()
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute("PRAGMA journal_mode=OFF")  # a fresh file inside a temp folder
            connection.execute(
                "CREATE TABLE gallery (id INTEGER PRIMARY KEY, path TEXT NOT NULL, "
                "pid INTEGER NOT NULL, camid INTEGER NOT NULL, added REAL NOT NULL)"
            )
            connection.execute("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            connection.execute(
                "INSERT INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            connection.executemany(
                "INSERT INTO gallery VALUES (?, ?, ?, ?, ?)",
                zip(
                    table.ids.tolist(), table.paths, table.pids.tolist(),
                    table.camids.tolist(), table.added.tolist(), strict=True,
                ),
            )  # fmt: skip
    finally:
        connection.close()


def read_sqlite(path: Path) -> GalleryTable:
    if not path.is_file():
        raise KdasError(f"gallery metadata {path} is missing: the index folder is incomplete")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        raise KdasError(f"gallery metadata {path} cannot be opened") from None
    try:
        version = connection.execute(
            "SELECT value FROM info WHERE key = 'schema_version'"
        ).fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise KdasError(
                f"gallery metadata {path} has schema {version and version[0]}, this kdas reads "
                f"{SCHEMA_VERSION}: rebuild the index"
            )
        rows = connection.execute(
            "SELECT id, path, pid, camid, added FROM gallery ORDER BY id"
        ).fetchall()
    except (sqlite3.DatabaseError, ValueError):
        raise KdasError(
            f"gallery metadata {path} is corrupt (not a kdas SQLite database): rebuild the index"
        ) from None
    finally:
        connection.close()
    if not rows:
        return GalleryTable.empty()
    ids, paths, pids, camids, added = zip(*rows, strict=True)
    return GalleryTable(
        np.array(ids, np.int64), np.array(pids, np.int64), np.array(camids, np.int64),
        np.array(added, np.float64), tuple(paths),
    )  # fmt: skip
