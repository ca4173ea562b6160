"""Devices and mixed precision: CUDA AMP, and bf16 autocast on CPU (AVX-512 bf16 / AMX)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from kdas.constants import AUTOCAST_PRECISIONS
from kdas.errors import BackendUnavailable, KdasError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(
            f"device {name!r} asked for, but this machine has no usable CUDA device; "
            "use --device cpu (or install kdas[gpu] on a GPU machine)"
        )
    return device


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise KdasError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    if precision not in AUTOCAST_PRECISIONS:
        raise KdasError(f"unknown precision {precision!r} ({', '.join(AUTOCAST_PRECISIONS)})")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype autocast runs a precision in (None: plain fp32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """fp32: nothing; bf16: autocast on the device; fp16: CUDA autocast (with a GradScaler)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=autocast_dtype(precision)):
        yield


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 gradients need loss scaling; bf16 has fp32's range and needs none."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
