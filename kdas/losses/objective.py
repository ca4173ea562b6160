"""The objective L_obj = λ1·L_d + λ2·L_tri as a sum of named terms.

Named terms keep logs readable and leave room for more (a latency term for a
deployment-focused search) without touching the training or search loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kdas.losses.config import LossConfig
from kdas.losses.distillation import KDState, distillation_loss
from kdas.losses.feature import feature_map_loss
from kdas.losses.triplet import batch_hard_triplet_loss


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Detached floats for logging."""
        out = {name: float(value.detach()) for name, value in self.terms.items()}
        out["total"] = float(self.total.detach())
        return out


@dataclass
class ReIDObjective:
    """The objective of one run: its loss config and the run's length (for the T schedule)."""

    config: LossConfig
    epochs: int

    def state(self, epoch: int) -> KDState:
        return self.config.kd.at(epoch, self.epochs)

    @property
    def mode(self) -> str:
        return self.config.kd.mode

    @property
    def needs_teacher(self) -> bool:
        return self.config.uses_teacher

    @property
    def uses_feature_maps(self) -> bool:
        return self.config.lambda_feature > 0

    def __call__(
        self,
        logits: torch.Tensor,
        features: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        state: KDState,
        feature_maps: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> LossOutput:
        """`feature_maps`: (adapted student map, teacher map) when `lambda_feature` > 0."""
        c = self.config
        terms = {
            "kd": distillation_loss(logits, teacher_logits, targets, state, c.label_smoothing),
            "triplet": batch_hard_triplet_loss(features, targets, c.margin),
        }
        weights = {"kd": c.lambda_kd, "triplet": c.lambda_triplet}
        if self.uses_feature_maps:
            if feature_maps is None:
                raise ValueError("loss.lambda_feature > 0 needs the student's and teacher's maps")
            terms["feature"] = feature_map_loss(*feature_maps)
            weights["feature"] = c.lambda_feature
        total = sum(weights[name] * value for name, value in terms.items())
        return LossOutput(total=total, terms=terms)
