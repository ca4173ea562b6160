"""The JSONL log of a long job: one line per epoch, safe against a crash mid-write.

The console and progress bars live in `kdas.progress`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdas.utils.atomic import atomic_write_text


class JsonlLog:
    """One JSON object per line, flushed as written, so a crash loses at most the current line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash ends the log
        return records

    def keep_until(self, epoch: int) -> None:
        """On resume, drop the lines of epochs that will be run again."""
        kept = [r for r in self.read() if r.get("epoch", -1) < epoch]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
