"""The typed config of the objective L_obj = λ1·L_d + λ2·L_tri (+ λ3·L_feat): the one home of
its defaults.

The training stages and the search hold a `LossConfig`; the loss functions themselves take
every setting as an argument, so no default is restated below this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdas.losses.distillation import KDSchedule
from kdas.utils.config import bounded


@dataclass
class LossConfig:
    kd: KDSchedule = field(default_factory=KDSchedule)  # mode "none": labels only
    lambda_kd: float = bounded(1.0, ge=0)
    lambda_triplet: float = bounded(1.0, ge=0)
    margin: float = bounded(0.3, ge=0)  # batch-hard triplet margin
    label_smoothing: float = bounded(0.1, ge=0, lt=1)  # ε of the label-smoothed CE inside L_d
    # feature-map distillation (retraining only): the student's last map through a 1×1 adapter
    # regresses the teacher's; 0 turns it off (the paper's objective)
    lambda_feature: float = bounded(0.0, ge=0)

    @property
    def uses_teacher(self) -> bool:
        """Whether any term reads the teacher (logit or feature-map distillation)."""
        return self.kd.mode != "none" or self.lambda_feature > 0
