"""The supernet: mixed op maths, head contract, α/weight partition, functional_call, genotype."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from model_checks import check_head_contract
from torch.func import functional_call

from kdas.errors import KdasError
from kdas.models.cells import MixedOp, SearchCell
from kdas.models.genotype import load_genotype
from kdas.models.ops import PRIMITIVES
from kdas.models.spec import SupernetArch
from kdas.models.supernet import Supernet
from kdas.search.config import SupernetConfig

TINY = SupernetArch(C=4, layers=5, reduction_positions=(1, 3))


pytestmark = pytest.mark.usefixtures("one_thread")


def _supernet(primitives: tuple[str, ...] = PRIMITIVES, **arch: object) -> Supernet:
    torch.manual_seed(0)
    return Supernet(6, dataclasses.replace(TINY, **arch), primitives)


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_its_ops(stride: int) -> None:
    torch.manual_seed(0)
    C = 6
    mixed = MixedOp(C, stride, PRIMITIVES).eval()
    x = torch.randn(2, C, 9, 7)
    weights = torch.softmax(torch.randn(len(PRIMITIVES)), dim=0)
    bn_scale = 1.0 / math.sqrt(1.0 + 1e-5)  # a fresh non-affine BN in eval mode
    by_name = dict(zip(PRIMITIVES, mixed.ops, strict=True))
    expected = {
        "none": torch.zeros(2, C, math.ceil(9 / stride), math.ceil(7 / stride)),
        "skip_connect": x if stride == 1 else by_name["skip_connect"](x),
        "max_pool_3x3": F.max_pool2d(x, 3, stride, 1) * bn_scale,
        "avg_pool_3x3": F.avg_pool2d(x, 3, stride, 1, count_include_pad=False) * bn_scale,
        "sep_conv_3x3": by_name["sep_conv_3x3"](x),
        "dil_conv_3x3": by_name["dil_conv_3x3"](x),
        "part_aware": by_name["part_aware"](x),
    }
    by_hand = sum(w * expected[name] for w, name in zip(weights, PRIMITIVES, strict=True))
    with torch.no_grad():
        assert torch.allclose(mixed(x, weights), by_hand, atol=1e-6)
    # Supernet ops are non-affine: α alone scales them.
    assert all(not m.affine for m in mixed.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_search_cell_has_fourteen_edges_with_reduction_strides() -> None:
    cell = SearchCell(4, 4, 8, 8, 4, True, False, PRIMITIVES)
    assert len(cell.ops) == 14
    strides = [cell.edge_stride(j) for _, j in cell.edges]
    assert strides == [2, 2, 2, 2, 1, 2, 2, 1, 1, 2, 2, 1, 1, 1]
    out = cell(
        torch.randn(2, 8, 9, 5), torch.randn(2, 8, 9, 5), torch.softmax(torch.randn(14, 7), -1)
    )
    assert out.shape == (2, 16, 5, 3)


@pytest.mark.parametrize("size", [(64, 32), (100, 44)])  # 100x44: 25x11 -> 13x6 -> 7x3
def test_forward_head_contract(size: tuple[int, int]) -> None:
    net = _supernet()
    # C=4: stem 12; cells 16, 32 (reduce), 32, 64 (reduce), 64 channels out.
    assert net.embedding_dim == 64 and net.num_classes == 6
    x = torch.randn(3, 3, *size)
    emb = check_head_contract(net, x, num_classes=6, dim=64)
    assert torch.isfinite(emb).all()
    fmap = net.forward_features(x)
    assert fmap.shape[2:] == tuple(math.ceil(s / 16) for s in size)


def test_default_macro_at_128x64() -> None:
    net = Supernet(5, SupernetArch(C=2))
    assert len(net.backbone.cells) == 8
    assert [c.reduction for c in net.backbone.cells] == [False, False, True] + [False, True] * 2 + [
        False
    ]
    assert net.alpha_normal.shape == (14, 7) and net.alpha_reduce.shape == (14, 7)
    assert net.embedding_dim == 4 * 8 * 2
    net.eval()
    with torch.no_grad():
        fmap = net.forward_features(torch.randn(1, 3, 128, 64))
    assert fmap.shape == (1, 64, 4, 2)


def test_arch_and_weight_parameters_partition_all_parameters() -> None:
    net = _supernet()
    arch = net.arch_parameters()
    weights = net.weight_parameters()
    assert {id(p) for p in arch} == {id(net.alpha_normal), id(net.alpha_reduce)}
    every = {id(p) for p in net.parameters()}
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert {id(p) for p in arch} | {id(p) for p in weights} == every
    assert len(arch) + len(weights) == len(list(net.parameters()))
    state = net.state_dict()
    assert torch.equal(state["alpha_normal"], net.alpha_normal.detach())
    assert net.double().alpha_reduce.dtype == torch.float64  # .to() moves α too


def test_gradients_reach_alpha_and_weights() -> None:
    net = _supernet().train()
    logits, f = net(torch.randn(4, 3, 64, 32))
    (F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])) + f.square().mean()).backward()
    assert net.alpha_normal.grad is not None and net.alpha_normal.grad.abs().sum() > 0
    assert net.alpha_reduce.grad is not None and net.alpha_reduce.grad.abs().sum() > 0
    assert net.head.classifier.weight.grad is not None


def test_functional_call_evaluates_other_weights() -> None:
    """The unrolled architect's w' = w - xi * grad, without touching the model."""
    net = _supernet().train()
    x = torch.randn(4, 3, 64, 32)
    logits, _ = net(x)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    shifted = {
        name: (p - 0.1 * p.grad).detach() if p.grad is not None else p.detach()
        for name, p in net.named_weight_parameters()
    }
    net.eval()
    params = {**shifted, "alpha_normal": net.alpha_normal, "alpha_reduce": net.alpha_reduce}
    out = functional_call(net, params, (x,))
    out.sum().backward()  # gradients flow to α through the functional call
    assert net.alpha_normal.grad is not None
    reference = copy.deepcopy(net)
    with torch.no_grad():
        for name, p in reference.named_weight_parameters():
            p.copy_(shifted[name])
        assert torch.allclose(reference(x), out, atol=1e-6)
        assert not torch.allclose(net(x), out)  # the model's own weights were left alone


def test_alphas_softmax_and_genotype() -> None:
    net = _supernet()
    soft = net.alphas_softmax()
    assert torch.allclose(soft["normal"].sum(-1), torch.ones(14))
    with torch.no_grad():
        net.alpha_normal.zero_()
        net.alpha_reduce.zero_()
        col = PRIMITIVES.index("sep_conv_3x3")
        net.alpha_normal[:, col] = 5.0
        net.alpha_reduce[:, PRIMITIVES.index("part_aware")] = 5.0
    g = net.genotype()
    assert g.normal == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)) * 4
    assert g.reduce == (("part_aware", 0), ("part_aware", 1)) * 4
    assert load_genotype(g) == g
    with torch.no_grad():
        net.alpha_normal[:, PRIMITIVES.index("skip_connect")] = 6.0
    assert net.genotype(max_skip_normal=1).normal.count(("skip_connect", 1)) == 1


def test_primitive_subset_and_bad_configs() -> None:
    net = _supernet(primitives=("none", "skip_connect", "sep_conv_3x3"))
    assert net.alpha_normal.shape == (14, 3)
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 32)).shape == (1, 64)
    with pytest.raises(KdasError, match="reduction position 5 is outside the 5 cells"):
        _supernet(reduction_positions=(1, 5))
    with pytest.raises(KdasError, match="'conv_7x7' not known ops"):
        _supernet(primitives=("none", "conv_7x7"))
    with pytest.raises(KdasError, match="part_aware needs a feature map at least 4 rows"):
        _supernet().eval()(torch.randn(1, 3, 32, 16))


def test_config_rebuilds_the_structure() -> None:
    net = _supernet(primitives=("none", "skip_connect", "sep_conv_3x3"))
    rebuilt = Supernet(**net.config())
    assert rebuilt.arch == net.arch and rebuilt.primitives == net.primitives
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    # A search's config is an arch too; its primitives travel separately.
    searched = Supernet(6, SupernetConfig(C=4, layers=5, reduction_positions=(1, 3)))
    assert searched.arch == TINY and type(searched.arch) is SupernetArch
