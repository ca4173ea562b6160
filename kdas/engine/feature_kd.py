"""The trainable side of feature-map distillation: a 1×1 adapter from the student's last-map
channels to the teacher's, trained with the student and dropped when the student is written."""

from __future__ import annotations

import torch
from torch import nn

from kdas.engine.precision import autocast


class FeatureAdapter(nn.Sequential):
    """conv 1×1 (no bias) + BN: the regressor of FitNets' hint loss, as fast-reid's students use."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__(
            nn.Conv2d(student_channels, teacher_channels, 1, bias=False),
            nn.BatchNorm2d(teacher_channels),
        )


def teacher_targets(
    teacher: torch.nn.Module, images: torch.Tensor, want_logits: bool, precision: str
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The frozen teacher's last feature map, and its logits when this epoch distils them, in
    one forward pass."""
    with torch.no_grad(), autocast(images.device, precision):
        logits, feature_map = teacher.classify_with_map(images)
    return (logits.float() if want_logits else None), feature_map.float()
