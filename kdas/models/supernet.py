"""The DARTS supernet for Re-ID: stem + searched cells + the shared Re-ID head, with α.

α (`alpha_normal`, `alpha_reduce`: edges x primitives) are `nn.Parameter`s of the model, so
state_dict, `.to()`, checkpoints and DDP carry them; the two optimizers must still see disjoint
sets, which is what `arch_parameters()` / `weight_parameters()` give (weight decay of the
weight optimizer must never touch α).

For the second-order (unrolled) architect, evaluate the loss at other weights without copying
the model: `torch.func.functional_call(net, {**named weights w', "alpha_normal": ..., ...},
(x,))`. Buffers not passed (BN running stats) are the model's own and are updated in train mode.

The structure is a `kdas.models.spec.SupernetArch` (the macro settings at search width plus the
search cell); the primitive set is passed on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kdas.errors import KdasError
from kdas.models.cells import SearchCell
from kdas.models.derive import derive_genotype
from kdas.models.genotype import Genotype, num_edges
from kdas.models.head import ReIDModel
from kdas.models.macro import CellStack
from kdas.models.ops import PRIMITIVES, check_primitives
from kdas.models.spec import SupernetArch, arch_of
from kdas.utils.config import to_dict

ARCH_PARAMETER_NAMES = ("alpha_normal", "alpha_reduce")


class Supernet(ReIDModel):
    def __init__(
        self,
        num_classes: int,
        arch: SupernetArch | Mapping[str, Any] | None = None,
        primitives: Sequence[str] = PRIMITIVES,
    ) -> None:
        """`arch` is the structure (defaults: `SupernetArch()`); a `SupernetConfig` will do."""
        arch = arch_of(SupernetArch, arch)
        primitives = check_primitives(primitives)
        steps, multiplier = arch.steps, arch.multiplier
        if steps < 1 or not 1 <= multiplier <= steps:
            raise KdasError(
                f"supernet: need steps >= 1 and 1 <= multiplier <= steps "
                f"(got steps={steps}, multiplier={multiplier})"
            )

        def make_cell(
            C_pp: int, C_p: int, C_cur: int, reduction: bool, reduction_prev: bool
        ) -> SearchCell:
            return SearchCell(
                steps, multiplier, C_pp, C_p, C_cur, reduction, reduction_prev, primitives
            )

        backbone = CellStack(arch, make_cell)
        super().__init__(backbone, backbone.out_channels, num_classes)
        self.arch = arch
        self.primitives = primitives
        self.steps = steps
        self.multiplier = multiplier
        shape = (num_edges(steps), len(primitives))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready): `Supernet(**net.config())` rebuilds the structure."""
        return {
            "num_classes": self.num_classes,
            "arch": to_dict(self.arch),
            "primitives": list(self.primitives),
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(
            x, torch.softmax(self.alpha_normal, dim=-1), torch.softmax(self.alpha_reduce, dim=-1)
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Every parameter but α, with its name (for functional_call in the unrolled architect)."""
        for name, param in self.named_parameters():
            if name not in ARCH_PARAMETER_NAMES:
                yield name, param

    def weight_parameters(self) -> list[nn.Parameter]:
        return [param for _, param in self.named_weight_parameters()]

    def alphas_softmax(self) -> dict[str, torch.Tensor]:
        """Softmax weights per edge (detached, CPU), for logging and the genotype file."""
        return {
            "normal": torch.softmax(self.alpha_normal.detach(), dim=-1).cpu(),
            "reduce": torch.softmax(self.alpha_reduce.detach(), dim=-1).cpu(),
        }

    def genotype(self, max_skip_normal: int | None = None) -> Genotype:
        """The architecture the current α point to (see `derive_genotype`)."""
        return derive_genotype(
            self.alpha_normal,
            self.alpha_reduce,
            self.primitives,
            steps=self.steps,
            max_skip_normal=max_skip_normal,
            multiplier=self.multiplier,
        )
