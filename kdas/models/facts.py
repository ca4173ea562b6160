"""Size facts of a model: parameter counts and FLOPs.

FLOPs are 2 x multiply-adds of the eval-mode forward of one image, as counted by
`torch.utils.flop_counter.FlopCounterMode`: convolutions (depthwise and grouped included, with
their true cost), matmul/bmm/linear and attention kernels. Elementwise work (ReLU, BN, adds,
pooling, softmax) is not counted; in eval mode a `ReIDModel` stops at the BNNeck feature, so the
classifier is not counted either. These numbers describe size, not speed: on CPUs FLOPs do not
predict latency for depthwise-heavy cells (performance-notes.md), so measure that separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _count(params: list[nn.Parameter] | set[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{'total', 'backbone', 'head', 'other', 'trainable'}: `other` is what lies outside the
    backbone and head (a supernet's α); `trainable` counts parameters with requires_grad
    (the BNNeck's frozen bias is not). Shared parameters count once."""
    params = set(model.parameters())
    backbone = set(model.backbone.parameters()) if hasattr(model, "backbone") else params
    head = set(model.head.parameters()) if hasattr(model, "head") else set()
    return {
        "total": _count(params),
        "backbone": _count(backbone),
        "head": _count(head),
        "other": _count(params - backbone - head),
        "trainable": _count({p for p in params if p.requires_grad}),
    }


def count_flops(
    model: nn.Module, input_size: Sequence[int] = (256, 128), in_channels: int = 3
) -> int:
    """FLOPs (2 x multiply-adds) of an eval-mode forward of one `in_channels` x H x W image."""
    height, width = input_size
    try:
        reference = next(model.parameters())
        device, dtype = reference.device, reference.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, in_channels, height, width, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
