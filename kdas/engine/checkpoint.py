"""Resumable training state: written atomically, read back safely (weights_only=True)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdas.errors import KdasError
from kdas.models.safe_load import load_torch_file
from kdas.utils.atomic import atomic_output_path


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, in types the weights-only loader accepts."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_cached,
        ],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rank_rng_state(saved: Any, rank: int) -> dict[str, Any]:
    """This rank's RNG state from a checkpoint that holds one per rank (or, from a
    single-process run, just one)."""
    if isinstance(saved, list):
        if rank >= len(saved):
            raise KdasError(
                f"the checkpoint holds RNG states for {len(saved)} processes, this is rank "
                f"{rank}: resume with the same number of processes"
            )
        return saved[rank]
    return saved


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_cached)
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_output_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise KdasError(f"checkpoint not found: {path}")
    try:
        return load_torch_file(path, "checkpoint", map_location)
    except KdasError as exc:
        raise KdasError(
            f"{exc}: delete it to start over (--force), or restore it from a copy"
        ) from None
