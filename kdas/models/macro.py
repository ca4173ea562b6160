"""The macro structure shared by supernet and student: stem, then a stack of cells.

Stem: conv 3x3 stride 2, BN, ReLU, conv 3x3 stride 2, BN (overall stride 4, as ResNet-50's
stem + max pool, so 256x128 ends at 8x4 after three reductions). Channels double at each
reduction cell; the reduction positions are stated (0-based), never derived from `layers`.
The settings are a `kdas.models.spec.MacroConfig`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdas.errors import KdasError
from kdas.models.cells import CellBase
from kdas.models.spec import MacroConfig

CellFactory = Callable[[int, int, int, bool, bool], CellBase]


class Stem(nn.Sequential):
    def __init__(self, out_channels: int, in_channels: int = 3) -> None:
        mid = max(1, out_channels // 2)
        super().__init__(
            nn.Conv2d(in_channels, mid, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


def check_macro(macro: MacroConfig) -> tuple[int, ...]:
    """Validate the macro settings; returns the reduction positions as a sorted tuple."""
    C, layers, stem_multiplier = macro.C, macro.layers, macro.stem_multiplier
    if C < 1 or layers < 1 or stem_multiplier < 1:
        raise KdasError(
            f"network: C, layers and stem_multiplier must be >= 1 (got C={C}, layers={layers}, "
            f"stem_multiplier={stem_multiplier})"
        )
    positions = tuple(int(p) for p in macro.reduction_positions)
    bad = [p for p in positions if not 0 <= p < layers]
    if bad:
        raise KdasError(
            f"network: reduction position {bad[0]} is outside the {layers} cells "
            f"(0-based: 0..{layers - 1})"
        )
    if len(set(positions)) != len(positions):
        raise KdasError(f"network: repeated reduction position in {list(positions)}")
    return tuple(sorted(positions))


class CellStack(nn.Module):
    """Stem + cells; each cell reads the outputs of the two cells before it (the stem output
    serves as both inputs of the first cell)."""

    def __init__(self, macro: MacroConfig, make_cell: CellFactory) -> None:
        super().__init__()
        positions = check_macro(macro)
        stem_channels = macro.stem_multiplier * macro.C
        self.stem = Stem(stem_channels)
        C_prev_prev, C_prev, C_curr = stem_channels, stem_channels, macro.C
        reduction_prev = False
        cells = []
        for i in range(macro.layers):
            reduction = i in positions
            if reduction:
                C_curr *= 2
            cell = make_cell(C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            cells.append(cell)
            C_prev_prev, C_prev = C_prev, cell.out_channels
            reduction_prev = reduction
        self.cells = nn.ModuleList(cells)
        self.out_channels = C_prev

    def forward(
        self,
        x: torch.Tensor,
        weights_normal: torch.Tensor | None = None,
        weights_reduce: torch.Tensor | None = None,
    ) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights = weights_reduce if cell.reduction else weights_normal
            args = () if weights is None else (weights,)
            s0, s1 = s1, cell(s0, s1, *args)
        return s1
