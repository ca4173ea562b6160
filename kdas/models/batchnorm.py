"""BatchNorm statistics without training: untrained or re-sized networks get realistic
activation ranges (what INT8 calibration and latency benchmarks of untrained models need)."""

from __future__ import annotations

import torch


def adapt_batchnorm(net: torch.nn.Module, images: torch.Tensor, chunk: int = 16) -> None:
    """Set every BatchNorm's running statistics to the average of its batch statistics over
    `images` in chunks (cumulative averaging, no gradient step); leaves `net` in eval mode."""
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        for part in images.split(chunk):
            net(part)
    net.eval()
