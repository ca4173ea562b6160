"""The static student: forward contract, training, an independent parameter count, ONNX parity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from genotypes import EVERY_OP
from model_checks import check_head_contract, onnx_and_torch_outputs

from kdas.errors import KdasError
from kdas.models.genotype import Genotype, save_genotype
from kdas.models.spec import StudentArch
from kdas.models.student import StudentNetwork

pytestmark = pytest.mark.usefixtures("one_thread")


def _op_params(op: str, C: int, stride: int) -> int:
    h = max(1, C // 3)
    bn = 2 * C
    return {
        "none": 0,
        "skip_connect": 0 if stride == 1 else C * C + bn,  # factorized reduce: 2 x C*C/2 + BN
        "max_pool_3x3": 0,
        "avg_pool_3x3": 0,
        "sep_conv_3x3": 2 * (9 * C + C * C + bn),
        "dil_conv_3x3": 9 * C + C * C + bn,
        # 4 stripe convs C->h, their BNs, K and Q (with bias), the (C+h)->C map + BN
        "part_aware": 4 * C * h + 4 * 2 * h + 2 * (h * h + h) + (C + h) * C + bn,
    }[op]


def _expected_parameters(genotype: Genotype, C: int, num_classes: int, reductions=(2, 4, 6)) -> int:
    stem_out = 3 * C
    mid = stem_out // 2
    total = 3 * 9 * mid + 2 * mid + mid * 9 * stem_out + 2 * stem_out
    c_pp, c_p, c = stem_out, stem_out, C
    for i in range(8):
        reduction = i in reductions
        c = 2 * c if reduction else c
        pairs = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        total += (c_pp * c + 2 * c) + (c_p * c + 2 * c)  # the two input preprocessings
        for op, j in pairs:
            total += _op_params(op, c, 2 if reduction and j < 2 else 1)
        c_pp, c_p = c_p, len(concat) * c
    return total + 2 * c_p + c_p * num_classes  # BNNeck (weight, bias) + classifier


def test_parameter_count_matches_an_independent_count() -> None:
    for C in (4, 6, 7):
        net = StudentNetwork(EVERY_OP, num_classes=5, arch=StudentArch(C=C))
        assert sum(p.numel() for p in net.parameters()) == _expected_parameters(EVERY_OP, C, 5)


def test_forward_contract_at_even_and_odd_sizes() -> None:
    torch.manual_seed(0)
    net = StudentNetwork(EVERY_OP, num_classes=5, arch=StudentArch(C=4))
    # Last cell: normal, concat of 4 nodes at 8C = 32 channels -> 128.
    assert net.embedding_dim == 128
    for size in [(128, 64), (150, 70)]:  # 150x70: 38x18 -> 19x9 -> 10x5 -> 5x3
        x = torch.randn(2, 3, *size)
        check_head_contract(net, x, num_classes=5, dim=128)
        with torch.no_grad():
            fmap = net.forward_features(x)
        assert fmap.shape[2:] == tuple(math.ceil(s / 32) for s in size)


def test_teacher_width_at_c64() -> None:
    net = StudentNetwork(EVERY_OP, num_classes=3, arch=StudentArch(C=64))
    assert net.embedding_dim == 4 * 8 * 64 == 2048


def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    net = StudentNetwork(EVERY_OP, 4, StudentArch(C=4, drop_path_prob=0.0)).train()
    x = torch.randn(8, 3, 128, 64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(4):
        logits, _ = net(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        for name, p in net.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.isfinite(p.grad).all(), name
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    net = StudentNetwork(EVERY_OP, num_classes=4, arch=StudentArch(C=4))
    x = torch.randn(4, 3, 128, 64)
    net.eval()
    with torch.no_grad():
        clean = net(x)
        net.drop_path_prob = 0.5
        assert all(cell.drop_path_prob == 0.5 for cell in net.backbone.cells)
        assert torch.equal(net(x), clean)
        net.train()
        torch.manual_seed(1)
        _, f1 = net(x)
        net.drop_path_prob = 0.0
        torch.manual_seed(1)
        _, f0 = net(x)
    assert not torch.allclose(f1, f0)
    # Identity edges are never dropped; the stride-2 skip (a factorized reduce) may be.
    normal, reduce = net.backbone.cells[0], net.backbone.cells[2]
    assert normal.droppable[3] is False and reduce.droppable[0] is True
    with pytest.raises(ValueError, match="drop_path_prob"):
        net.drop_path_prob = 1.0


def test_genotype_sources_and_errors(tmp_path: Path) -> None:
    path = save_genotype(tmp_path / "genotype.json", EVERY_OP)
    from_file = StudentNetwork(path, num_classes=3, arch=StudentArch(C=4))
    assert from_file.genotype == EVERY_OP
    rebuilt = StudentNetwork(**from_file.config())
    assert rebuilt.genotype == EVERY_OP and rebuilt.embedding_dim == from_file.embedding_dim
    with pytest.raises(KdasError, match=r"8 pairs \(4 nodes\), expected 10"):
        StudentNetwork(path, num_classes=3, steps=5)
    with pytest.raises(KdasError, match="reduction position 8 is outside"):
        StudentNetwork(EVERY_OP, 3, StudentArch(C=4, reduction_positions=(2, 8)))


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = StudentNetwork(EVERY_OP, 5, StudentArch(C=4, drop_path_prob=0.2))
    net.train()
    with torch.no_grad():
        for _ in range(3):  # give the BN layers non-trivial running statistics
            net(torch.randn(4, 3, 128, 64) * 2 + 0.5)
    net.eval()
    sample = torch.randn(1, 3, 128, 64)
    names = ("images", "embedding")
    outputs = onnx_and_torch_outputs(net, tmp_path / "student.onnx", sample, names)
    for batch, (out, ref) in zip((1, 3), outputs, strict=True):
        assert out.shape == (batch, 128)
        assert np.abs(ref).max() > 1e-2  # a real signal, not a vanishing one
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
