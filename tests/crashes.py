"""A simulated crash for resume tests: the job dies right after its first checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kdas.engine import runner


def crash_after_first_checkpoint(
    monkeypatch: pytest.MonkeyPatch, job: Callable[[], object]
) -> None:
    """Run `job` until the runner has written its first checkpoint, then interrupt it (as a
    killed process would be); the real `save_checkpoint` is back afterwards."""
    original = runner.save_checkpoint

    def save_then_crash(path: Path, state: dict) -> None:
        original(path, state)
        raise KeyboardInterrupt("simulated crash after the first epoch")

    monkeypatch.setattr(runner, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        job()
    monkeypatch.setattr(runner, "save_checkpoint", original)
