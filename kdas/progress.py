"""The console and the progress bars of every long job kdas runs: one look, one home.

Rich only, never torch: training, feature extraction, the synthetic generator, `kdas bench`
and the index commands all draw their bars through here, the torch-free CLI side included.
Bars go to stderr and stay off when it is not a terminal, so logs and CI get no redraws.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)

T = TypeVar("T")


class _StatusColumn(ProgressColumn):
    """A task's `status` field (the epoch's loss, say); nothing for tasks without one."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("status", "")))


class _RateColumn(ProgressColumn):
    """Items per second, e.g. `12.5 images/s`."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


def make_progress(enabled: bool = True, *, rate: str | None = None) -> Progress:
    """A transient bar: description, bar, done/total, the task's status, elapsed, remaining;
    `rate` adds a speed column in that unit ("images")."""
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _StatusColumn(),
    ]
    if rate is not None:
        columns.append(_RateColumn(rate))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(
        *columns,
        console=console,
        disable=not (enabled and console.is_terminal),  # no bar redraws in logs or CI
        transient=True,
    )


def track(items: Iterable[T], description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over `items` (a sized collection) with a bar."""
    items = list(items)
    with make_progress(enabled) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
