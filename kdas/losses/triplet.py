"""Batch-hard triplet loss (paper eq. 8) on the pooled feature f."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdas.losses.precision import at_least_fp32


def pairwise_euclidean(features: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all rows; clamped before sqrt so the gradient stays finite
    on the zero diagonal."""
    squared = features.pow(2).sum(1, keepdim=True)
    dist = squared + squared.t() - 2.0 * features @ features.t()
    return dist.clamp_min(1e-12).sqrt()


def batch_hard_triplet_loss(
    features: torch.Tensor, targets: torch.Tensor, margin: float
) -> torch.Tensor:
    """For each anchor: hardest positive (farthest same id) and hardest negative (closest other
    id); mean of max(0, d_ap - d_an + margin) over anchors that have both.

    Anchors without a positive or a negative in the batch are left out; a batch with none
    returns zero (still attached to the graph) rather than NaN.
    """
    features = at_least_fp32(features)
    dist = pairwise_euclidean(features)
    same = targets.unsqueeze(0) == targets.unsqueeze(1)
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    positive = same & ~eye
    negative = ~same
    d_ap = torch.where(positive, dist, torch.full_like(dist, -1.0)).max(1).values
    d_an = torch.where(negative, dist, torch.full_like(dist, float("inf"))).min(1).values
    valid = positive.any(1) & negative.any(1)
    if not bool(valid.any()):
        return features.sum() * 0.0
    return F.relu(d_ap[valid] - d_an[valid] + margin).mean()
