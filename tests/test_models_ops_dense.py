"""The latency-friendly ops (dense convs, inverted residuals), DARTS' 5x5 ops, the named primitive
sets, and every registered op through ONNX and INT8 (QDQ) without float32 compute islands."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from genotypes import DARTS_V1_TEXT, DENSE_OPS, GDAS_V1_TEXT
from model_checks import (
    COMPUTE_OPS,
    float_islands,
    onnx_and_torch_outputs,
    quantize_like_export,
)
from torch import nn

from kdas.errors import KdasError
from kdas.models.batchnorm import adapt_batchnorm
from kdas.models.blocks import InvertedResidual
from kdas.models.genotype import load_genotype
from kdas.models.ops import (
    OPS,
    PRIMITIVE_SETS,
    PRIMITIVES,
    build_op,
    is_pooling,
    resolve_primitives,
)
from kdas.models.spec import StudentArch
from kdas.models.student import StudentNetwork

pytestmark = pytest.mark.usefixtures("one_thread")

DENSE = ("conv_3x3", "conv_1x1", "mbconv_3x3_e3", "mbconv_5x5_e6")
NEW_OPS = (*DENSE, "sep_conv_5x5", "dil_conv_5x5")
PROBE_SIZE = (15, 9)  # odd on purpose; the part-aware op needs >= 4 rows


def _batch_norms(op: nn.Module) -> list[nn.Module]:
    return [m for m in op.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]


# ---------------------------------------------------------------- the new ops' contract


@pytest.mark.parametrize("name", NEW_OPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 6), (7, 5), (9, 4), (5, 1), (1, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_new_op_keeps_channels_and_maps_size_to_ceil(
    name: str, stride: int, size: tuple[int, int], affine: bool
) -> None:
    C, (H, W) = 6, size
    op = build_op(name, C, stride, affine).train()
    y = op(torch.randn(2, C, H, W))
    assert y.shape == (2, C, math.ceil(H / stride), math.ceil(W / stride))
    assert torch.isfinite(y).all()
    assert _batch_norms(op) and all(bn.affine == affine for bn in _batch_norms(op))
    assert not is_pooling(op)


def _convs(op: nn.Module) -> list[nn.Conv2d]:
    return [m for m in op.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("stride", [1, 2])
def test_dense_conv_structure(stride: int) -> None:
    for name, k in (("conv_3x3", 3), ("conv_1x1", 1)):
        op = build_op(name, 6, stride, True)
        layers = list(op.op)
        assert isinstance(layers[0], nn.ReLU) and isinstance(layers[2], nn.BatchNorm2d)
        (conv,) = _convs(op)
        assert conv.groups == 1 and conv.kernel_size == (k, k) and conv.bias is None
        assert conv.stride == (stride, stride) and conv.padding == (k // 2, k // 2)
        assert sum(p.numel() for p in op.parameters()) == k * k * 36 + 2 * 6


@pytest.mark.parametrize(("name", "k", "e"), [("mbconv_3x3_e3", 3, 3), ("mbconv_5x5_e6", 5, 6)])
@pytest.mark.parametrize("stride", [1, 2])
def test_inverted_residual_structure(name: str, k: int, e: int, stride: int) -> None:
    C = 6
    op = build_op(name, C, stride, True)
    assert isinstance(op, InvertedResidual) and op.residual == (stride == 1)
    layers = list(op.op)
    assert isinstance(layers[0], nn.Conv2d)  # no pre-activation: the input is a BN output
    assert sum(isinstance(m, nn.ReLU) for m in layers) == 2
    assert not any(isinstance(m, nn.ReLU6 | nn.Hardtanh) for m in op.modules())
    expand, depthwise, project = _convs(op)
    assert (expand.in_channels, expand.out_channels, expand.kernel_size) == (C, e * C, (1, 1))
    assert depthwise.groups == e * C and depthwise.kernel_size == (k, k)
    assert depthwise.stride == (stride, stride) and depthwise.padding == (k // 2, k // 2)
    assert (project.in_channels, project.out_channels) == (e * C, C)
    assert [bn.num_features for bn in _batch_norms(op)] == [e * C, e * C, C]


def test_darts_5x5_ops_structure() -> None:
    C = 6
    sep = build_op("sep_conv_5x5", C, 2, True)
    dil = build_op("dil_conv_5x5", C, 2, True)
    assert sum(p.numel() for p in sep.parameters()) == 2 * (25 * C + C * C + 2 * C)
    assert sum(p.numel() for p in dil.parameters()) == 25 * C + C * C + 2 * C
    sep_dw = [m for m in _convs(sep) if m.groups == C]
    assert [(m.kernel_size, m.padding, m.stride) for m in sep_dw] == [
        ((5, 5), (2, 2), (2, 2)),
        ((5, 5), (2, 2), (1, 1)),
    ]
    (dil_dw,) = [m for m in _convs(dil) if m.groups == C]
    assert (dil_dw.kernel_size, dil_dw.padding, dil_dw.dilation) == ((5, 5), (4, 4), (2, 2))


@pytest.mark.parametrize("name", ["mbconv_3x3_e3", "mbconv_5x5_e6"])
def test_inverted_residual_adds_its_input_at_stride_one(name: str) -> None:
    """With the projection's output forced to zero the block is the identity at stride 1 and
    zero at stride 2; with random weights the stride-1 output is the chain plus the input."""
    x = torch.randn(2, 6, 7, 5)
    for stride in (1, 2):
        op = build_op(name, 6, stride, True).eval()
        with torch.no_grad():
            chain = op.op(x)
            assert torch.allclose(op(x), chain + x if stride == 1 else chain)
            last_bn = op.op[-1]
            op.op[-2].weight.zero_()
            last_bn.weight.zero_()
            last_bn.bias.zero_()
            y = op(x)
        expected = x if stride == 1 else torch.zeros_like(y)
        assert torch.equal(y, expected)


# ---------------------------------------------------------------- primitive sets


def test_named_primitive_sets() -> None:
    assert resolve_primitives("auto-reid") == PRIMITIVES
    assert PRIMITIVE_SETS["auto-reid"] == PRIMITIVES
    dense = resolve_primitives("auto-reid+dense")
    assert dense == (*PRIMITIVES, *DENSE)
    assert "sep_conv_5x5" not in dense and "dil_conv_5x5" not in dense
    assert all(set(ops) <= set(OPS) for ops in PRIMITIVE_SETS.values())


def test_resolve_primitives_lists_and_errors() -> None:
    assert resolve_primitives(["conv_3x3", "none", "part_aware"]) == (
        "conv_3x3",
        "none",
        "part_aware",
    )
    assert resolve_primitives(("sep_conv_5x5",)) == ("sep_conv_5x5",)
    with pytest.raises(
        KdasError, match=r"^'darts' is not a known primitive set \(known: auto-reid, auto-reid\+"
    ) as info:
        resolve_primitives("darts")
    assert "\n" not in str(info.value)
    with pytest.raises(KdasError, match="'conv_9x9' not known ops"):
        resolve_primitives(["none", "conv_9x9"])
    with pytest.raises(KdasError, match="duplicate"):
        resolve_primitives(["conv_3x3", "conv_3x3"])


# ---------------------------------------------------------------- ONNX and INT8, op by op


class OpProbe(nn.Module):
    """Conv-BN stem (3 -> C), then the op: the op sees a BN output, as in a cell."""

    def __init__(self, name: str, stride: int, C: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.op = build_op(name, C, stride, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.stem(x))


def _probe(name: str, stride: int) -> OpProbe:
    torch.manual_seed(0)
    probe = OpProbe(name, stride)
    adapt_batchnorm(probe, torch.randn(32, 3, *PROBE_SIZE))  # realistic BN statistics
    return probe


def _calibration(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((8, 3, *PROBE_SIZE), dtype=np.float32) for _ in range(4)]


def _export_and_quantize(probe: nn.Module, tmp_path: Path, keep_float: tuple[str, ...] = ()):
    """fp32 export (checked against torch at batch 1 and 3), then INT8; returns (int8 path,
    int8 model)."""
    fp32 = tmp_path / "op.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter chatter
        outputs = onnx_and_torch_outputs(probe, fp32, torch.randn(2, 3, *PROBE_SIZE))
    for out, ref in outputs:
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    int8 = tmp_path / "op.int8.onnx"
    return int8, quantize_like_export(fp32, int8, _calibration(), keep_float=keep_float)


@pytest.mark.parametrize("name", tuple(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_exports_and_quantizes_without_float_islands(
    name: str, stride: int, tmp_path: Path
) -> None:
    """Every op, the paper's and the new ones: ONNX parity, INT8 close to fp32, and every Conv /
    MatMul / Gemm of the INT8 graph fed by DequantizeLinear nodes only. For `part_aware` that
    includes the attention products K·Qᵀ and A·P (two activations each): onnxruntime's QDQ
    quantizer quantizes both inputs of a MatMul, so nothing stays float32 there either."""
    ort = pytest.importorskip("onnxruntime")
    probe = _probe(name, stride)
    path, model = _export_and_quantize(probe, tmp_path)
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert any(n.op_type in COMPUTE_OPS for n in model.graph.node)  # at least the stem conv
    assert float_islands(model) == []

    x = np.random.default_rng(1).standard_normal((4, 3, *PROBE_SIZE), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0]
    with torch.no_grad():
        ref = probe(torch.from_numpy(x)).numpy()
    assert y.shape == ref.shape and np.isfinite(y).all()
    if name == "none":
        np.testing.assert_array_equal(y, 0.0)
    else:
        rms_error = float(np.sqrt(np.mean((y - ref) ** 2)))
        assert rms_error < 0.1 * float(ref.std()), (rms_error, float(ref.std()))


def test_float_islands_names_an_unquantized_conv(tmp_path: Path) -> None:
    """The helper is not vacuous: a conv left out of quantization is reported, by name."""
    pytest.importorskip("onnxruntime")
    probe = _probe("conv_3x3", 1)
    _, model = _export_and_quantize(probe, tmp_path, keep_float=("/op/op/op.1/Conv",))
    assert float_islands(model) == ["/op/op/op.1/Conv"]


def _runtime_op_types(path: Path, tmp_path: Path) -> list[str]:
    """Node types of the graph onnxruntime really runs (QDQ groups fused into QLinear* kernels;
    the extended level, without the machine-specific NCHWc layout)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "runtime.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "runtime.onnx")).graph.node]


def test_part_aware_int8_runs_on_integers(tmp_path: Path) -> None:
    """At stride 1 the INT8 op runs on integers from input to output in onnxruntime: the six
    products (stripe mean, K, Q, K·Qᵀ, A·P, painting) are QLinearMatMul, the softmax is
    QLinearSoftmax, and the only float conversions are the graph's input Q and output DQ.
    (At stride 2 the factorized reduce adds its float Pad and BatchNorm, as everywhere.)"""
    pytest.importorskip("onnxruntime")
    path, model = _export_and_quantize(_probe("part_aware", 1), tmp_path)
    quantized = [n.op_type for n in model.graph.node]
    assert quantized.count("MatMul") == 6 and quantized.count("Softmax") == 1
    ops = _runtime_op_types(path, tmp_path)
    assert ops.count("QLinearMatMul") == 6 and ops.count("QLinearSoftmax") == 1
    assert ops.count("QLinearConv") == 3  # stem, stripe convs, output 1x1
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1
    float_compute = {"MatMul", "Softmax", "Conv", "Gemm", "ReduceMean", "BatchNormalization"}
    assert not float_compute & set(ops)


# ---------------------------------------------------------------- students


def test_dense_student_trains_one_step_and_exports(tmp_path: Path) -> None:
    assert load_genotype(DENSE_OPS) == DENSE_OPS
    torch.manual_seed(0)
    net = StudentNetwork(DENSE_OPS, num_classes=5, arch=StudentArch(C=4))
    x, labels = torch.randn(4, 3, 64, 32), torch.tensor([0, 1, 2, 3])
    lr = 0.05
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in trainable.items()}
    net.train()
    logits, _ = net(x)
    F.cross_entropy(logits, labels).backward()
    for name, p in trainable.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    optimizer.step()
    # Every parameter moves, except where the step is below float32 resolution (a few BN
    # scales of the expansions get gradients ~1e-7 at initialisation).
    unchanged = [name for name, p in trainable.items() if torch.equal(p, before[name])]
    assert len(unchanged) <= 0.02 * len(trainable)
    resolution = torch.finfo(torch.float32).eps
    for name in unchanged:
        step = lr * trainable[name].grad.abs().max()
        assert step <= resolution * before[name].abs().max(), name

    pytest.importorskip("onnxruntime")
    adapt_batchnorm(net, torch.randn(16, 3, 64, 32))
    sample = torch.randn(2, 3, 64, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = onnx_and_torch_outputs(net, tmp_path / "dense.onnx", sample)
    for out, ref in outputs:
        assert out.shape == ref.shape == (out.shape[0], net.head.in_channels)
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("text", [DARTS_V1_TEXT, GDAS_V1_TEXT], ids=["darts_v1", "gdas_v1"])
def test_published_darts_cells_build(text: str) -> None:
    genotype = load_genotype(text, steps=4)
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    net = StudentNetwork(genotype, num_classes=5, arch=StudentArch(C=4)).eval()
    with torch.no_grad():
        embedding = net(torch.randn(2, 3, 64, 32))
    assert embedding.shape == (2, net.head.in_channels) and torch.isfinite(embedding).all()


def test_gdas_v1_uses_the_5x5_ops() -> None:
    genotype = load_genotype(GDAS_V1_TEXT)
    reduce_ops = {op for op, _ in genotype.reduce}
    assert {"sep_conv_5x5", "dil_conv_5x5"} <= reduce_ops
    assert genotype.normal[3] == ("sep_conv_5x5", 2) and genotype.reduce[4] == ("dil_conv_5x5", 2)
