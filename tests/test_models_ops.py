"""The op registry: names, shape/stride contract at even and odd sizes, and the blocks' maths."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdas.errors import KdasError
from kdas.models.blocks import FactorizedReduce
from kdas.models.ops import OPS, PRIMITIVES, build_op, check_primitives, is_pooling

SEVEN = (
    "none",
    "skip_connect",
    "max_pool_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "dil_conv_3x3",
    "part_aware",
)


def test_registry_holds_the_seven_primitives_in_order() -> None:
    assert PRIMITIVES == SEVEN
    assert set(SEVEN) <= set(OPS)


@pytest.mark.parametrize("name", SEVEN)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 6), (7, 5), (9, 4), (5, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_op_keeps_channels_and_maps_size_to_ceil(
    name: str, stride: int, size: tuple[int, int], affine: bool
) -> None:
    C, (H, W) = 6, size
    op = build_op(name, C, stride, affine)
    op.train()
    y = op(torch.randn(2, C, H, W))
    assert y.shape == (2, C, math.ceil(H / stride), math.ceil(W / stride))
    assert torch.isfinite(y).all()
    for module in op.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            assert module.affine == affine


def test_none_is_zero_and_skip_is_identity_at_stride_one() -> None:
    x = torch.randn(2, 4, 7, 5)
    assert torch.equal(build_op("none", 4, 1, True)(x), torch.zeros_like(x))
    assert torch.equal(build_op("none", 4, 2, True)(x), torch.zeros(2, 4, 4, 3))
    assert torch.equal(build_op("skip_connect", 4, 1, True)(x), x)
    assert isinstance(build_op("skip_connect", 4, 2, True), FactorizedReduce)


@pytest.mark.parametrize("size", [(6, 4), (7, 5)])
def test_factorized_reduce_sees_both_pixel_grids(size: tuple[int, int]) -> None:
    """Branch 1 reads pixels (2i, 2j), branch 2 pixels (2i+1, 2j+1), zero beyond the edge."""
    H, W = size
    fr = FactorizedReduce(2, 2, affine=False).eval()
    with torch.no_grad():
        fr.conv_1.weight.fill_(1.0)  # (1, 2, 1, 1): sums the two input channels
        fr.conv_2.weight.fill_(1.0)
    x = torch.rand(1, 2, H, W) - 0.25
    relu_sum = x.clamp(min=0).sum(dim=1)[0]
    y = fr(x)[0] * math.sqrt(1.0 + fr.bn.eps)  # undo the fresh BN's 1/sqrt(1+eps)
    Ho, Wo = math.ceil(H / 2), math.ceil(W / 2)
    for i in range(Ho):
        for j in range(Wo):
            assert y[0, i, j].item() == pytest.approx(relu_sum[2 * i, 2 * j].item(), abs=1e-6)
            r, c = 2 * i + 1, 2 * j + 1
            expected = relu_sum[r, c].item() if r < H and c < W else 0.0
            assert y[1, i, j].item() == pytest.approx(expected, abs=1e-6)


def test_factorized_reduce_odd_output_channels() -> None:
    assert FactorizedReduce(4, 5)(torch.randn(2, 4, 7, 7)).shape == (2, 5, 4, 4)


def test_avg_pool_excludes_padding() -> None:
    pool = build_op("avg_pool_3x3", 3, 1, True)
    x = torch.full((1, 3, 5, 5), 2.0)
    assert torch.allclose(pool(x), x)  # a padded average would shrink the border


def test_sep_and_dil_conv_structure() -> None:
    C = 6
    sep = build_op("sep_conv_3x3", C, 2, True)
    dil = build_op("dil_conv_3x3", C, 2, True)
    n_sep = sum(p.numel() for p in sep.parameters())
    n_dil = sum(p.numel() for p in dil.parameters())
    assert n_sep == 2 * (9 * C + C * C + 2 * C)  # twice: depthwise, pointwise, BN
    assert n_dil == 9 * C + C * C + 2 * C
    depthwise = [m for m in dil.modules() if isinstance(m, nn.Conv2d) and m.groups == C]
    assert depthwise[0].dilation == (2, 2) and depthwise[0].padding == (2, 2)
    strides = [m.stride for m in sep.modules() if isinstance(m, nn.Conv2d) and m.groups == C]
    assert strides == [(2, 2), (1, 1)]


def test_pooling_detection() -> None:
    assert is_pooling(build_op("max_pool_3x3", 4, 1, False))
    assert is_pooling(build_op("avg_pool_3x3", 4, 2, False))
    assert not is_pooling(build_op("sep_conv_3x3", 4, 1, False))


def test_unknown_op_and_bad_primitive_sets() -> None:
    with pytest.raises(
        KdasError, match=r"'conv_9x9' is not a known op \(known: none, skip_connect"
    ):
        build_op("conv_9x9", 4, 1, True)
    with pytest.raises(KdasError, match="stride must be 1 or 2"):
        build_op("sep_conv_3x3", 4, 3, True)
    with pytest.raises(KdasError, match="'bogus' not known ops"):
        check_primitives(["none", "bogus"])
    with pytest.raises(KdasError, match="duplicate"):
        check_primitives(["none", "sep_conv_3x3", "sep_conv_3x3"])
    with pytest.raises(KdasError, match="other than 'none'"):
        check_primitives(["none"])
    assert check_primitives(["sep_conv_3x3", "none"]) == ("sep_conv_3x3", "none")
