"""The search-space ops: one registry, name -> constructor `(C, stride, affine) -> nn.Module`.

The supernet's mixed op, the genotype derivation and validation, and the static student all look
ops up by name in `OPS`, so adding an op is one line here. `PRIMITIVES` is only the default set a
search uses (the set itself is a config field); the registry may hold more.

Shape rule (every op, any H and W, even or odd): an op keeps its channel count C and maps
H x W to ceil(H / s) x ceil(W / s) at stride s, which is what a 3x3 conv/pool with padding 1
and a 1x1 conv give at stride 2. The factorized reduce's shifted branch is zero-padded by one
row and column at the bottom/right before the shift so that it obeys the same rule for odd sizes;
cells therefore stay consistent at odd intermediate resolutions (e.g. 25 -> 13 -> 7 -> 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdas.errors import KdasError

NONE = "none"
SKIP = "skip_connect"


class ReLUConvBN(nn.Module):
    """ReLU -> conv -> BN: the cell-input preprocessing and the part-aware output map."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


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


class SepConv(nn.Module):
    """Depthwise-separable 3x3 applied twice (stride only in the first), as in DARTS."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

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
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The `none` op: zeros of the output shape, so a node may ignore an input entirely."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def _part_aware(C: int, stride: int, affine: bool) -> nn.Module:
    from kdas.models.part_aware import PartAware  # part_aware imports this module's blocks

    return PartAware(C, C, stride=stride, affine=affine)


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    NONE: lambda C, stride, affine: Zero(stride),
    SKIP: lambda C, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)
    ),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "part_aware": _part_aware,
}

PRIMITIVES: tuple[str, ...] = (
    NONE,
    SKIP,
    "max_pool_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "dil_conv_3x3",
    "part_aware",
)


def known_ops() -> str:
    """The registry's names, for error messages."""
    return ", ".join(OPS)


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Construct a registered op; a clear error for an unknown name."""
    if name not in OPS:
        raise KdasError(f"{name!r} is not a known op (known: {known_ops()})")
    if stride not in (1, 2):
        raise KdasError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return OPS[name](C, stride, affine)


def check_primitives(primitives: Sequence[str]) -> tuple[str, ...]:
    """Validate a search's primitive set against the registry (it must offer a non-`none` op)."""
    names = tuple(primitives)
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise KdasError(
            f"primitives: {', '.join(map(repr, unknown))} not known ops (known: {known_ops()})"
        )
    if len(set(names)) != len(names):
        raise KdasError(f"primitives: duplicate names in {list(names)}")
    if not any(name != NONE for name in names):
        raise KdasError("primitives: need at least one op other than 'none'")
    return names


def is_pooling(op: nn.Module) -> bool:
    """Parameter-free pooling ops get a non-affine BN in the supernet's mixed op (DARTS)."""
    return isinstance(op, nn.MaxPool2d | nn.AvgPool2d)
