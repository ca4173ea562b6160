"""The one way kdas reads a torch file: `torch.load(..., weights_only=True)`, with errors that
say what is wrong with the file. Torch's own refusal advises retrying with weights_only=False,
which is the wrong advice for a file from someone else, so it is never passed on."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from kdas.errors import KdasError


def load_torch_file(path: str | Path, what: str, map_location: Any = "cpu") -> Any:
    """The tensors (and plain containers of numbers) in `path`; `what` names the file's role
    in the message ("checkpoint", "weights")."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise KdasError(
            f"{what} {path} holds Python objects besides tensors, and kdas never unpickles "
            "those (loading them can run code): save it as safetensors, or as a plain state "
            "dict of tensors"
        ) from None
    except Exception as exc:  # truncated or foreign files fail in many ways
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = f": {detail[:100]}" if detail else ""
        raise KdasError(
            f"{what} {path} cannot be read ({type(exc).__name__}{detail}); it is truncated or "
            "not a torch file"
        ) from None
