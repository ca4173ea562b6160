"""The conv blocks the search-space ops and the cells are made of.

These know nothing of the op registry (`kdas.models.ops` names them), so any op module, the
part-aware one included, can use them without an import circle.

Shape rule (every block, any H and W, even or odd): a block maps H x W to ceil(H / s) x
ceil(W / s) at stride s, which is what a 3x3 conv with padding 1 and a 1x1 conv give at stride 2.
The factorized reduce's shifted branch is zero-padded by one row and column at the bottom/right
before the shift so that it obeys the same rule for odd sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Chain(nn.Module):
    """A block that is one `nn.Sequential` named `op` (the name fixes the state-dict keys)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.op = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ReLUConvBN(_Chain):
    """ReLU -> 1x1 conv -> BN: the cell-input preprocessing (to the cell's channel count)."""

    def __init__(self, C_in: int, C_out: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(_Chain):
    """ReLU -> (dilated) depthwise conv -> pointwise conv -> BN."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(_Chain):
    """Depthwise-separable conv applied twice (stride only in the first), as in DARTS: two
    undilated `DilConv`s in a row, their layers in one sequence."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool
    ) -> None:
        first = DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine)
        second = DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine)
        super().__init__(*first.op, *second.op)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: two 1x1 stride-2 convs, the second
    one on the input shifted by one pixel, so together they see all four pixels of each 2x2 cell.

    For odd H or W the input is zero-padded at the bottom/right before the shift, so both branches
    give ceil(H/2) x ceil(W/2). An odd C_out gives the shifted branch the extra channel.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        half = C_out // 2
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, half, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - half, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """The `none` op: zeros of the output shape, so a node may ignore an input entirely."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)
