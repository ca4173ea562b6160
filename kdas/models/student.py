"""The static student: the supernet's stem, macro structure and head, with cells from a genotype.

One op per edge, affine BN, no α and no data-dependent control flow, so it exports to ONNX as
is. Drop-path (training only) is the settable `drop_path_prob` attribute the engine schedules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kdas.models.cells import StaticCell
from kdas.models.genotype import Genotype, genotype_to_dict, load_genotype
from kdas.models.head import ReIDModel
from kdas.models.macro import CellStack
from kdas.models.spec import StudentArch, arch_of
from kdas.utils.config import to_dict


class StudentNetwork(ReIDModel):
    def __init__(
        self,
        genotype: Genotype | Mapping[str, Any] | str | os.PathLike[str],
        num_classes: int,
        arch: StudentArch | Mapping[str, Any] | None = None,
        steps: int | None = None,
    ) -> None:
        """`arch` is the structure and the starting drop-path (defaults: `StudentArch()`);
        `steps`, when given, is the node count the genotype must have."""
        arch = arch_of(StudentArch, arch)
        genotype = load_genotype(genotype, steps=steps)  # validates, whatever form it came in

        def make_cell(
            C_pp: int, C_p: int, C_cur: int, reduction: bool, reduction_prev: bool
        ) -> StaticCell:
            pairs = genotype.reduce if reduction else genotype.normal
            concat = genotype.reduce_concat if reduction else genotype.normal_concat
            return StaticCell(pairs, concat, C_pp, C_p, C_cur, reduction, reduction_prev)

        backbone = CellStack(arch, make_cell)
        super().__init__(backbone, backbone.out_channels, num_classes)
        self.genotype = genotype
        self.arch = arch
        self.drop_path_prob = arch.drop_path_prob

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"drop_path_prob must be in [0, 1), got {value}")
        self._drop_path_prob = float(value)
        for cell in self.backbone.cells:
            cell.drop_path_prob = self._drop_path_prob

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready, genotype as its JSON document, no drop-path since
        it is a training schedule): `StudentNetwork(**net.config())` rebuilds the structure."""
        arch = {k: v for k, v in to_dict(self.arch).items() if k != "drop_path_prob"}
        return {
            "genotype": genotype_to_dict(self.genotype),
            "num_classes": self.num_classes,
            "arch": arch,
        }
