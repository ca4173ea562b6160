"""Loss arithmetic runs in at least float32, whatever precision the network ran in."""

from __future__ import annotations

import torch


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 activations are upcast; float64 (used by gradient checks) is kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
