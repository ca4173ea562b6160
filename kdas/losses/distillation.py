"""Distillation with the temperature schedule of KDAS-ReID (paper 3.3, method.md "Losses").

The paper lowers T from T0 = 2 evenly to 0 at epoch 190 of 200 and says that at T = 0 the
distillation loss equals the label CE. A softmax at T -> 0 is unusable and its target would be
the teacher's argmax, not the label, so kdas implements the intent: a weight w_e = T_e / T0
moves the objective from the teacher's soft targets to the labels, while the softmax itself
never runs colder than T_floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from kdas.losses.cross_entropy import label_smoothed_cross_entropy
from kdas.losses.precision import at_least_fp32
from kdas.utils.config import bounded

KDMode = Literal["none", "constant", "dynamic"]


@dataclass(frozen=True)
class KDState:
    """The distillation settings for one epoch: T_e (scheduled), w_e (teacher weight), T_kd
    (the temperature the softmax actually uses)."""

    temperature: float
    weight: float
    kd_temperature: float


@dataclass(frozen=True)
class KDSchedule:
    """`none`: CE only (w = 0); `constant`: T = T0, w = 1; `dynamic`: T_e = T0·max(0, 1 - e/E_d),
    w_e = T_e / T0, with E_d = decay_fraction · epochs (190 of 200 in the paper).

    The number of epochs is the run's (`run.epochs`), passed in, never stored twice."""

    mode: KDMode = "none"
    t0: float = bounded(2.0, gt=0)
    t_floor: float = bounded(1.0, gt=0)
    decay_fraction: float = bounded(0.95, gt=0, le=1)

    def decay_epochs(self, epochs: int) -> float:
        return max(self.decay_fraction * epochs, 1e-9)

    def at(self, epoch: int, epochs: int) -> KDState:
        if self.mode == "none":
            return KDState(temperature=0.0, weight=0.0, kd_temperature=self.t_floor)
        if self.mode == "constant":
            return KDState(
                temperature=self.t0, weight=1.0, kd_temperature=max(self.t0, self.t_floor)
            )
        t_e = self.t0 * max(0.0, 1.0 - epoch / self.decay_epochs(epochs))
        weight = t_e / self.t0 if self.t0 > 0 else 0.0
        return KDState(temperature=t_e, weight=weight, kd_temperature=max(t_e, self.t_floor))


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), batch mean; log-space so tiny T stays finite."""
    log_p_s = F.log_softmax(at_least_fp32(student_logits) / temperature, dim=1)
    log_p_t = F.log_softmax(at_least_fp32(teacher_logits) / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    state: KDState,
    label_smoothing: float,
) -> torch.Tensor:
    """L_d = w·T_kd²·KL(p_t ‖ p_s) + (1 − w)·CE(z_s, y); terms with zero weight are skipped so
    the `none` mode needs no teacher at all."""
    loss = at_least_fp32(student_logits).new_zeros(())
    if state.weight > 0:
        if teacher_logits is None:
            raise ValueError("distillation weight > 0 needs teacher logits")
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                f"{tuple(student_logits.shape)} differ: the teacher must be trained on the same "
                "identities"
            )
        loss = loss + state.weight * soft_target_kl(
            student_logits, teacher_logits, state.kd_temperature
        )
    if state.weight < 1:
        loss = loss + (1.0 - state.weight) * label_smoothed_cross_entropy(
            student_logits, targets, label_smoothing
        )
    return loss
