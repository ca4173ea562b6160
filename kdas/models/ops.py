"""The search-space ops: one registry, name -> constructor `(C, stride, affine) -> nn.Module`.

The supernet's mixed op, the genotype derivation and validation, and the static student all look
ops up by name in `OPS`, so adding an op is one line here. The registry holds more ops than any
one search uses: a search chooses among a primitive set, named in `PRIMITIVE_SETS` or listed op
by op (`resolve_primitives`), `auto-reid` (the paper's seven, `PRIMITIVES`) by default.
`auto-reid+dense` adds dense and inverted-residual convs, which INT8 (VNNI/AMX) CPUs and Tensor
Cores run at full rate, so a latency-aware search can trade the separable ops for them. The 5x5
separable and dilated convs are in no set: they are here so that published DARTS cells (DARTS-V1,
GDAS) build as students. The modules the constructors build live in `kdas.models.blocks` and
`kdas.models.part_aware`, which do not import this registry.

Shape rule (every op, any H and W, even or odd): an op keeps its channel count C and maps
H x W to ceil(H / s) x ceil(W / s) at stride s (see `kdas.models.blocks`), so cells stay
consistent at odd intermediate resolutions (e.g. 25 -> 13 -> 7 -> 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from kdas.errors import KdasError
from kdas.models.blocks import (
    ConvBN,
    DilConv,
    FactorizedReduce,
    InvertedResidual,
    SepConv,
    Zero,
)
from kdas.models.part_aware import PartAware

NONE = "none"
SKIP = "skip_connect"


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
    "part_aware": lambda C, stride, affine: PartAware(C, C, stride=stride, affine=affine),
    # Beyond the paper: dense convs and inverted residuals (the `auto-reid+dense` set).
    "conv_3x3": lambda C, stride, affine: ConvBN(C, C, 3, stride, affine=affine),
    "conv_1x1": lambda C, stride, affine: ConvBN(C, C, 1, stride, affine=affine),
    "mbconv_3x3_e3": lambda C, stride, affine: InvertedResidual(C, C, 3, stride, 3, affine=affine),
    "mbconv_5x5_e6": lambda C, stride, affine: InvertedResidual(C, C, 5, stride, 6, affine=affine),
    # DARTS' 5x5 ops, for published cells (DARTS-V1, GDAS); in no primitive set.
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
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

DEFAULT_PRIMITIVE_SET = "auto-reid"
PRIMITIVE_SETS: dict[str, tuple[str, ...]] = {
    DEFAULT_PRIMITIVE_SET: PRIMITIVES,
    "auto-reid+dense": (*PRIMITIVES, "conv_3x3", "conv_1x1", "mbconv_3x3_e3", "mbconv_5x5_e6"),
}


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


def resolve_primitives(ops: str | Sequence[str]) -> tuple[str, ...]:
    """A search's `ops` setting -> its primitives: a string names a set in `PRIMITIVE_SETS`, a
    sequence lists the ops themselves (validated by `check_primitives`)."""
    if isinstance(ops, str):
        if ops not in PRIMITIVE_SETS:
            raise KdasError(
                f"{ops!r} is not a known primitive set (known: {', '.join(PRIMITIVE_SETS)}); "
                "give a set name or a list of op names"
            )
        return PRIMITIVE_SETS[ops]
    return check_primitives(ops)


def is_pooling(op: nn.Module) -> bool:
    """Parameter-free pooling ops get a non-affine BN in the supernet's mixed op (DARTS)."""
    return isinstance(op, nn.MaxPool2d | nn.AvgPool2d)
