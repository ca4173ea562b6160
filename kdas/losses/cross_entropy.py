"""Label-smoothed cross-entropy, the label term of every kdas objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdas.losses.precision import at_least_fp32


def label_smoothed_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """Mean CE against (1 - ε)·one-hot + ε/C; ε = 0 is the paper's eq. 6.

    Computed in float32 so bf16 autocast does not degrade the log-sum-exp.
    """
    return F.cross_entropy(at_least_fp32(logits), targets, label_smoothing=epsilon)
