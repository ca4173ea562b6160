"""The conv blocks the search-space ops and the cells are made of.

These know nothing of the op registry (`kdas.models.ops` names them), so any op module, the
part-aware one included, can use them without an import circle.

Shape rule (every block, any H and W, even or odd): a block maps H x W to ceil(H / s) x
ceil(W / s) at stride s, which is what a k x k conv (k odd) with padding d * (k // 2) gives at
dilation d and stride 1 or 2, a 1x1 conv with padding 0 included.
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


class ConvBN(_Chain):
    """ReLU -> dense k x k conv (stride s, padding k // 2) -> BN.

    A dense conv does more arithmetic than a separable one but in one big, regular kernel that
    VNNI/AMX and Tensor Cores run at full rate, so on those targets it can be the faster op (the
    `conv_3x3` and `conv_1x1` ops; the latency table decides). With an odd k and padding k // 2
    it obeys the shape rule.
    """

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class ReLUConvBN(ConvBN):
    """ReLU -> 1x1 conv -> BN: the cell-input preprocessing (to the cell's channel count)."""

    def __init__(self, C_in: int, C_out: int, affine: bool) -> None:
        super().__init__(C_in, C_out, 1, 1, affine)


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


class InvertedResidual(_Chain):
    """MobileNetV2's block without squeeze-excitation: 1x1 expand to e*C_in -> BN -> ReLU ->
    depthwise k x k (stride s, padding k // 2) -> BN -> ReLU -> 1x1 project -> BN, plus the input
    when the stride is 1 and the channels match.

    Its input is not pre-activated (a cell's states are BN outputs or sums of them), so it starts
    with the expansion, not a ReLU. Plain ReLU rather than ReLU6, as in the rest of the space:
    INT8 QDQ folds a ReLU into the U8 range of the conv before it, and a fixed cap at 6 adds
    nothing once the calibrated range bounds the activations anyway.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        expansion: int,
        affine: bool,
    ) -> None:
        hidden = C_in * expansion
        super().__init__(
            nn.Conv2d(C_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(
                hidden, hidden, kernel_size, stride, kernel_size // 2, groups=hidden, bias=False
            ),
            nn.BatchNorm2d(hidden, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )
        self.residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op(x)
        return out + x if self.residual else out


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
