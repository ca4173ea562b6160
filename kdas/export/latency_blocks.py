"""One measurement of the latency profile: a block (or a whole network) built with random
weights, exported on its own, quantized and compiled as the deployment would, and timed.

The block is measured through the real runtime because that is where the cost is decided:
fusion, INT8 kernels and bf16 matrix units make FLOPs a poor guide on these CPUs
(performance-notes.md). Weights are random but BatchNorm statistics are adapted to random
inputs, so activations (and INT8 ranges) have realistic scales. Blocks run with a static batch;
whole networks go through the same export, runner and IR code as `kdas export` / `kdas bench`,
so what the correction is fitted on is what a deployment measures.

A block alone pays costs a network pays once: the call overhead (subtracted), and in OpenVINO
the layout reorders at the graph's input and output (measured: a 1x1 conv, 64 channels at
64x32, INT8, spends 0.32 of its 0.65 ms reordering its output to NCHW). Those are a similar
share for every op at a place, so the ranking holds and the linear correction absorbs them.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdas import __version__
from kdas.constants import IMAGENET_MEAN, IMAGENET_STD, ONNX_OPSET
from kdas.errors import KdasError
from kdas.export import measure
from kdas.models.latency_table import TableMacro, check_backend, op_key

Runner = Callable[[np.ndarray], object]
Call = Callable[[], object]  # a runner bound to its input: what gets timed
BLOCK_KINDS = ("op", "relu_conv_bn", "factorized_reduce", "stem", "head")
BLOCK_INPUT, BLOCK_OUTPUT = "x", "y"
MAX_SECONDS = 30.0  # per measurement: stop early after 3 timed calls past this
CALIBRATION_BATCHES = 4  # random batches for INT8 ranges (latency does not depend on them)
ADAPT_BATCHES, ADAPT_BATCH_SIZE = 2, 4  # train-mode forwards that set BatchNorm statistics
OVERHEAD_SHAPE = (1, 4, 4)  # the trivial graph whose call time is the runtime's overhead


@dataclass(frozen=True)
class Target:
    """Where and how everything is timed: a `LATENCY_BACKENDS` name, threads, static batch."""

    backend: str
    threads: int
    batch: int

    @property
    def runtime(self) -> str:
        return check_backend(self.backend)[0]

    @property
    def precision(self) -> str:
        return check_backend(self.backend)[1]

    @property
    def int8(self) -> bool:
        return self.precision == "int8"


def require_backend(backend: str) -> None:
    """Fail in one line, before any work, where this machine cannot run `backend`."""
    runtime, precision, _ = check_backend(backend)
    from kdas.export.graph import import_onnx

    import_onnx()
    if runtime == "tensorrt":
        from kdas.export.tensorrt_build import require_tensorrt

        require_tensorrt()
    elif runtime == "openvino":
        from kdas.runtime.openvino_model import check_precision_supported, import_openvino

        import_openvino()
        check_precision_supported(precision)
    else:
        from kdas.runtime.session import import_onnxruntime

        import_onnxruntime()
    if precision == "int8":
        from kdas.export.quantize import _quantization

        _quantization()  # the QDQ graphs come from onnxruntime's quantization tools


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Build and export with the profile's thread count, so it does not crowd the timing."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------- blocks


class _L2Head(nn.Module):
    """The head as the exported graph runs it: pool, BNNeck, x / max(||x||, eps)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        from kdas.export.onnx_export import EmbeddingGraph
        from kdas.models.head import ReIDHead

        self.graph = EmbeddingGraph(ReIDHead(channels, num_classes=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)


class _Trivial(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


@dataclass(frozen=True)
class BlockSpec:
    """A distinct block of the macro structure: what it is and the (C, H, W) it reads."""

    kind: str
    C_in: int
    C_out: int
    H: int
    W: int
    stride: int = 1
    op: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.C_in, self.H, self.W

    def label(self) -> str:
        if self.kind == "op":
            return op_key(self.op, self.C_in, self.H, self.W, self.stride)
        return f"{self.kind}|{self.C_in}->{self.C_out}|{self.H}x{self.W}"

    def build(self) -> nn.Module:
        from kdas.models.blocks import FactorizedReduce, ReLUConvBN
        from kdas.models.macro import Stem
        from kdas.models.ops import build_op

        if self.kind == "op":
            return build_op(self.op, self.C_in, self.stride, affine=True)
        if self.kind == "relu_conv_bn":
            return ReLUConvBN(self.C_in, self.C_out, affine=True)
        if self.kind == "factorized_reduce":
            return FactorizedReduce(self.C_in, self.C_out, affine=True)
        if self.kind == "stem":
            return Stem(self.C_out, self.C_in)
        if self.kind == "head":
            return _L2Head(self.C_in)
        raise KdasError(f"internal: unknown block kind {self.kind!r} (known: {BLOCK_KINDS})")


def plan_blocks(
    macro: TableMacro, size: tuple[int, int], ops: Sequence[str]
) -> dict[BlockSpec, list[tuple[str, str]]]:
    """Every distinct block to time, with the table entries ("ops" or "fixed", key) it fills:
    identical preprocessing blocks are timed once and recorded under every cell's key."""
    plan: dict[BlockSpec, list[tuple[str, str]]] = {}
    H, W = size
    plan[BlockSpec("stem", 3, macro.stem_channels(), H, W)] = [("fixed", "stem")]
    for place in macro.places(size):
        for C, h, w, stride in place.edge_shapes():
            for op in ops:
                spec = BlockSpec("op", C, C, h, w, stride, op)
                plan.setdefault(spec, []).append(("ops", op_key(op, C, h, w, stride)))
        for k, pre in enumerate(place.preprocess()):
            spec = BlockSpec(pre["kind"], pre["C_in"], pre["C_out"], pre["H"], pre["W"])
            plan.setdefault(spec, []).append(("fixed", f"cell{place.index}.preprocess{k}"))
    C_out, h, w = macro.output_shape(size)
    plan[BlockSpec("head", C_out, C_out, h, w)] = [("fixed", "head")]
    return plan


def adapt_batchnorm(module: nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """Random weights, BatchNorm statistics of random inputs (cumulative average over a few
    forwards with the norms in train mode), then eval mode: realistic activation scales for
    INT8 ranges and the runtime."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        generator = torch.Generator().manual_seed(seed)
        module.eval()  # only the norms train: heads and cells keep their inference forward
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        with torch.no_grad():
            for _ in range(ADAPT_BATCHES):
                module(torch.randn(ADAPT_BATCH_SIZE, *input_shape, generator=generator))
    return module.eval()


def _random_batches(shape: tuple[int, ...], count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(count)]


def export_block(
    module: nn.Module, input_shape: tuple[int, ...], target: Target, path: Path
) -> Path:
    """The block alone as ONNX (legacy exporter: fast and enough for one block). The batch is
    static, except for TensorRT, whose engines take a batch range."""
    example = torch.randn(target.batch, *input_shape)
    dynamic = {BLOCK_INPUT: {0: "batch"}, BLOCK_OUTPUT: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), input_names=[BLOCK_INPUT],
            output_names=[BLOCK_OUTPUT], opset_version=ONNX_OPSET, dynamo=False,
            do_constant_folding=True,
            dynamic_axes=dynamic if target.runtime == "tensorrt" else None,
        )  # fmt: skip
    return path


def block_onnx(spec: BlockSpec, target: Target, work: Path, seed: int = 0) -> Path:
    """The ONNX file the runtime reads for one block: exported, and for INT8 backends
    quantized as the full export is (QDQ, S8 per-channel weights, U8 activations)."""
    torch.manual_seed(seed)
    module = adapt_batchnorm(spec.build(), spec.input_shape, seed)
    name = spec.label().replace("|", "_").replace(">", "")
    path = export_block(module, spec.input_shape, target, work / f"{name}.onnx")
    if not target.int8:
        return path
    from kdas.export.graph import save_single_file
    from kdas.export.quantize import quantize_qdq

    batches = _random_batches((target.batch, *spec.input_shape), CALIBRATION_BATCHES, seed)
    l2_output = BLOCK_OUTPUT if spec.kind == "head" else None
    model = quantize_qdq(path, batches, BLOCK_INPUT, l2_output)
    return save_single_file(model, work / f"{name}.int8.onnx")


# ---------------------------------------------------------------- runners


def _info(kind: str, size: Any, input_name: str, output_name: str, dim: int, precision: str) -> Any:
    """The kdas metadata the runtime's runners read (names, size): random weights, no data."""
    from kdas.runtime.model_meta import EmbeddingModelInfo

    return EmbeddingModelInfo(
        model_kind=kind,
        input_name=input_name,
        output_name=output_name,
        input_height=int(size[0]),
        input_width=int(size[1]),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=dim,
        weights_sha256="random-weights",
        precision=precision,
        l2_normalized=output_name != BLOCK_OUTPUT,
        kdas_version=__version__,
    )


@lru_cache(maxsize=1)
def _ov_core() -> Any:
    from kdas.runtime.openvino_model import import_openvino

    return import_openvino().Core()


def _openvino_block_runner(path: Path, target: Target) -> Runner:
    """Compiled as `OpenVINOModel` compiles an IR: LATENCY hint, the precision's inference hint
    (none for INT8: the plugin's choice for what QDQ left in float), the thread count."""
    from kdas.runtime.openvino_model import PRECISION_HINTS

    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": target.threads,
    }
    hint = PRECISION_HINTS.get(target.precision)
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    request = _ov_core().compile_model(str(path), "CPU", config).create_infer_request()
    return lambda batch: request.infer({0: batch})


def _tensorrt_block_runner(path: Path, input_shape: tuple[int, ...], target: Target) -> Runner:
    """An engine for one block (fp16; INT8 from its QDQ nodes), the batch range ending at the
    profile's batch; run by the runtime's `TensorRTRunner`, which reads a metadata sidecar."""
    from kdas.export.tensorrt_build import require_tensorrt
    from kdas.runtime.tensorrt_engine import TensorRTRunner, sidecar_candidates
    from kdas.utils.atomic import atomic_write_bytes, atomic_write_json

    trt, _ = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KdasError(f"TensorRT cannot parse {path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    if target.int8:
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    full = (target.batch, *input_shape)
    profile.set_shape(BLOCK_INPUT, (1, *input_shape), full, full)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise KdasError(f"TensorRT failed to build an engine for {path.name}")
    engine = atomic_write_bytes(path.with_suffix(".engine"), bytes(serialized))
    info = _info("block", input_shape[-2:], BLOCK_INPUT, BLOCK_OUTPUT, 0, target.precision)
    atomic_write_json(sidecar_candidates(engine)[0], {"metadata_props": info.to_metadata_props()})
    return TensorRTRunner(engine).run


def block_runner(path: Path, input_shape: tuple[int, ...], target: Target) -> Runner:
    """A ready-to-time callable on one (batch, C, H, W) float32 array."""
    if target.runtime == "openvino":
        return _openvino_block_runner(path, target)
    if target.runtime == "tensorrt":
        return _tensorrt_block_runner(path, input_shape, target)
    from kdas.runtime.session import create_session

    session = create_session(path, providers="cpu", intra_op_threads=target.threads)
    return lambda batch: session.run(None, {BLOCK_INPUT: batch})


def _bound(runner: Runner, input_shape: tuple[int, ...], target: Target) -> Call:
    x = _random_batches((target.batch, *input_shape), 1, seed=0)[0]
    return lambda: runner(x)


def overhead_call(target: Target, work: Path) -> Call:
    """One call of the runtime with (almost) no work: a single add on a tiny tensor. Its time
    is subtracted from every block's, since a network pays it once, not once per block."""
    path = export_block(_Trivial().eval(), OVERHEAD_SHAPE, target, work / "overhead.onnx")
    return _bound(block_runner(path, OVERHEAD_SHAPE, target), OVERHEAD_SHAPE, target)


def block_call(spec: BlockSpec, target: Target, work: Path, seed: int = 0) -> Call | None:
    """The block exported, compiled and bound to a random input, ready to time; None for an
    identity (skip_connect at stride 1), which is free in the deployed graph."""
    if isinstance(spec.build(), nn.Identity):
        return None
    path = block_onnx(spec, target, work, seed)
    return _bound(block_runner(path, spec.input_shape, target), spec.input_shape, target)


def time_interleaved(calls: Sequence[Call], warmup: int, repeats: int) -> list[float]:
    """Median ms of each call over `repeats` timed calls.

    Several calls are timed in turns, one timed call each per round, right after an untimed
    one (the others evicted its weights; a deployment keeps them warm). This machine kind is
    shared and its speed changes on a scale of seconds (the same network: 16 ms, then 25 ms),
    so timing one block or network after the other would give each a different share of slow
    periods; in turns, they all get the same. A single call goes through `measure.time_calls`.
    """
    if len(calls) == 1:
        return [measure.time_calls(calls[0], warmup, repeats, MAX_SECONDS).p50_ms]
    for call in calls:
        for _ in range(warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, mine in zip(calls, times, strict=True):
            call()
            start = time.perf_counter()
            call()
            mine.append(time.perf_counter() - start)
    return [float(np.median(mine)) * 1e3 for mine in times]


# ---------------------------------------------------------------- whole networks


def _network_onnx(net: nn.Module, size: tuple[int, int], target: Target, work: Path) -> Path:
    """The network as `kdas export` writes it (eval graph + L2 normalisation, dynamic batch,
    kdas metadata), with the legacy exporter (same numbers as dynamo, ten times faster)."""
    from kdas.export.graph import save_single_file
    from kdas.export.metadata import INPUT_NAME, OUTPUT_NAME, write_metadata
    from kdas.export.onnx_export import export_graph

    model, _ = export_graph(net, size, work / "network.raw.onnx", exporter="legacy")
    dim = int(getattr(net, "embedding_dim", 0))
    write_metadata(model, _info("network", size, INPUT_NAME, OUTPUT_NAME, dim, "fp32"))
    return save_single_file(model, work / "network.onnx")


def _network_runner(
    fp32: Path, size: tuple[int, int], target: Target, work: Path, seed: int
) -> Runner:
    """The runner `kdas bench` would use for this backend, on the exported files."""
    from kdas.export.backends import make_runner

    source = fp32
    if target.int8:
        from kdas.export.quantize import quantize_int8_batches

        shape = (target.batch, 3, *size)
        batches = _random_batches(shape, CALIBRATION_BATCHES, seed)
        source = quantize_int8_batches(
            fp32, work / "network.int8.onnx", batches, described_as="random tensors"
        )
    if target.runtime == "onnxruntime":
        name = "onnx-int8" if target.int8 else "onnx"
        return make_runner(name, "", {name: source}, work, target.threads)
    if target.runtime == "openvino":
        from kdas.export.openvino_export import export_openvino

        xml = export_openvino(
            fp32, work / "network.xml", target.precision,
            int8_onnx=source if target.int8 else None,
        )  # fmt: skip
        return make_runner(target.backend, "", {target.backend: xml}, work, target.threads)
    from kdas.export.tensorrt_build import build_engine
    from kdas.runtime.tensorrt_engine import TensorRTRunner

    profile = (1, target.batch, target.batch)
    engine = build_engine(source, work / "network.engine", target.precision, batch_sizes=profile)
    return TensorRTRunner(engine).run


def network_call(
    net: nn.Module, size: tuple[int, int], target: Target, work: Path, seed: int = 0
) -> Call:
    """A whole Re-ID network, BatchNorm adapted, exported into `work` (one folder per network
    that should stay runnable), loaded by the backend's deployment runner, bound to an input.
    Its time includes the call overhead: a deployment pays it."""
    adapt_batchnorm(net, (3, *size), seed)
    fp32 = _network_onnx(net, size, target, work)
    return _bound(_network_runner(fp32, size, target, work, seed), (3, *size), target)
