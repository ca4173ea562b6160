"""Warnings for a training run that ended without learning: it exits 0, so say it loudly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kdas.data.records import ImageRecord

CHANCE_MULTIPLE = 2.0  # a final rank-1 within this factor of chance is "not learned"


def gallery_identities(gallery: Sequence[ImageRecord]) -> int:
    """Identities a query could match (distractors, pid 0 or -1, excluded)."""
    return len({r.pid for r in gallery if r.pid > 0})


def chance_warning(
    metrics: dict[str, Any] | None, gallery: Sequence[ImageRecord], what: str, recipe: str
) -> str | None:
    """One warning line when rank-1 is within 2× of chance (1 / #identities), naming the
    likely causes; `recipe` describes the run's schedule (epochs, warm-up, lr)."""
    ids = gallery_identities(gallery)
    if not metrics or ids < 2 or "rank1" not in metrics:
        return None
    chance = 1.0 / ids
    if metrics["rank1"] > CHANCE_MULTIPLE * chance:
        return None
    return (
        f"warning: {what} ended at rank-1 {metrics['rank1']:.3f}, within {CHANCE_MULTIPLE:g}x "
        f"of chance (1/{ids} = {chance:.3f}): it has not learned. Likely causes: a schedule "
        f"too long for the run ({recipe}), a learning rate wrong for the optimizer, too few "
        "epochs or images, or labels that do not match the images (check the layout)."
    )
