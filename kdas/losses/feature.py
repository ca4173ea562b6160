"""Feature-map distillation (FitNets-style hints): the student's last feature map, mapped to the
teacher's channels by a learnt 1×1 adapter, regresses the teacher's last feature map.

The paper leaves it to future work; fast-reid distils Re-ID students on feature maps too. The
adapter lives with the training job, not in the student, so the exported network is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdas.losses.precision import at_least_fp32


def feature_map_loss(adapted: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the adapted student map and the teacher's map, the student's
    resized (bilinear) when the two nets end at different resolutions."""
    if adapted.shape[:2] != teacher_map.shape[:2]:
        raise ValueError(
            f"adapted student map {tuple(adapted.shape)} and teacher map "
            f"{tuple(teacher_map.shape)} differ in batch or channels"
        )
    adapted = at_least_fp32(adapted)
    if adapted.shape[-2:] != teacher_map.shape[-2:]:
        adapted = F.interpolate(
            adapted, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False
        )
    return F.mse_loss(adapted, at_least_fp32(teacher_map).detach())
