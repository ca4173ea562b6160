"""The part-aware op: stripe layout, the maths against a slice-by-slice reference, ONNX export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_checks import onnx_and_torch_outputs

from kdas.errors import KdasError
from kdas.models.part_aware import PartAware, stripe_of_rows


def _boundaries(H: int, P: int = 4) -> list[int]:
    return [(i * H) // P for i in range(P + 1)]


@pytest.mark.parametrize("H", range(4, 41))
def test_every_row_is_in_exactly_one_nonempty_stripe(H: int) -> None:
    b = _boundaries(H)
    members = [[r for r in range(H) if b[i] <= r < b[i + 1]] for i in range(4)]
    assert all(members), f"empty stripe for H={H}: {b}"
    assert sorted(r for stripe in members for r in stripe) == list(range(H))
    expected = [next(i for i in range(4) if r in members[i]) for r in range(H)]
    assert stripe_of_rows(H).tolist() == expected


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(KdasError, match=r"at least 4 rows high.*got 3"):
        PartAware(6, 6)(torch.randn(2, 6, 3, 8))


def _reference(m: PartAware, x: torch.Tensor) -> torch.Tensor:
    """Slice-by-slice re-statement of method.md, using the module's weights (eval mode)."""
    B, C, H, W = x.shape
    P, h = m.parts, m.part_dim
    b = _boundaries(H, P)
    conv_w = m.stripe_conv.weight.reshape(P, h, C)
    bn = m.stripe_bn
    parts = []
    for i in range(P):
        pooled = F.relu(x[:, :, b[i] : b[i + 1], :].mean(dim=(2, 3)))  # (B, C)
        z = pooled @ conv_w[i].t()  # (B, h)
        sl = slice(i * h, (i + 1) * h)
        z = (z - bn.running_mean[sl]) / torch.sqrt(bn.running_var[sl] + bn.eps)
        parts.append(z * bn.weight[sl] + bn.bias[sl])
    Pm = torch.stack(parts, dim=1)  # (B, P, h)
    K, Q = m.key(Pm), m.query(Pm)
    A = torch.softmax(K @ Q.transpose(1, 2) / math.sqrt(h), dim=-1)
    Fm = A @ Pm
    painted = torch.zeros(B, h, H, W)
    for i in range(P):
        painted[:, :, b[i] : b[i + 1], :] = Fm[:, i, :, None, None]
    return m.out(torch.cat([x, painted], dim=1))


def _randomize_bn(m: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("H", [4, 5, 7, 9, 17])
@pytest.mark.parametrize("stride", [1, 2])
def test_matches_reference_on_odd_heights(H: int, stride: int) -> None:
    torch.manual_seed(0)
    m = PartAware(9, 7, stride=stride).eval()
    _randomize_bn(m)
    x = torch.randn(3, 9, H, 5)
    with torch.no_grad():
        y = m(x)
        ref = _reference(m, x)
    assert y.shape == (3, 7, math.ceil(H / stride), math.ceil(5 / stride))
    assert torch.allclose(y, ref, atol=1e-5)


def test_gradients_reach_every_weight() -> None:
    m = PartAware(6, 6, stride=2).train()
    m(torch.randn(4, 6, 7, 3)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_export_dynamic_batch_matches_pytorch(tmp_path: Path, dynamo: bool) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = PartAware(6, 8, stride=2).eval()
    _randomize_bn(m)
    x = torch.randn(2, 6, 9, 5)
    for out, ref in onnx_and_torch_outputs(m, tmp_path / "part_aware.onnx", x, dynamo=dynamo):
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
