"""Losses as pure functions on tensors, and the objective that sums them by name."""

from kdas.losses.config import LossConfig
from kdas.losses.cross_entropy import label_smoothed_cross_entropy
from kdas.losses.distillation import KDSchedule, KDState, distillation_loss
from kdas.losses.objective import LossOutput, ReIDObjective
from kdas.losses.triplet import batch_hard_triplet_loss

__all__ = [
    "KDSchedule",
    "KDState",
    "LossConfig",
    "LossOutput",
    "ReIDObjective",
    "batch_hard_triplet_loss",
    "distillation_loss",
    "label_smoothed_cross_entropy",
]
