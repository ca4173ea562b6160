"""`kdas latency profile` / `validate` on tiny structures: the table covers every place, loads
back and predicts; INT8 blocks are really quantized; missing backends and bad outputs fail
before any work; the CLI writes a loadable table and validates it."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kdas.cli.app import app
from kdas.errors import BackendUnavailable, KdasError
from kdas.export import latency_blocks
from kdas.export.latency_profile import (
    ProfileConfig,
    fit_correction,
    measure_models,
    profile_latency,
    random_genotype,
    spearman,
    validate_predictor,
)
from kdas.models.genotype import load_genotype
from kdas.models.latency_table import LatencyTable, load_latency_table, machine_fingerprint, op_key

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

OPS = ["none", "skip_connect", "sep_conv_3x3", "conv_3x3"]


def tiny(**overrides: Any) -> ProfileConfig:
    """3 cells (one reduction), 2-node cells, C=4 at 32x16: a few dozen small blocks."""
    settings: dict[str, Any] = {
        "backend": "ort-fp32", "size": (32, 16), "C": 4, "threads": 1, "layers": 3,
        "reduction_positions": (1,), "steps": 2, "multiplier": 2, "ops": OPS, "teacher": None,
        "repeats": 2, "warmup": 1, "fit_networks": 2,
    }  # fmt: skip
    return ProfileConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def fp32_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[LatencyTable, Path]:
    out = tmp_path_factory.mktemp("lut") / "sub" / "lut.json"  # the folder is made on save
    return profile_latency(tiny(teacher="resnet18"), out, progress=False), out


def _every_time(table: LatencyTable) -> list[float]:
    return [*table.ops.values(), *table.fixed.values(), table.call_overhead_ms]


def test_table_covers_every_place_and_fixed_block(fp32_table: tuple[LatencyTable, Path]) -> None:
    table, _ = fp32_table
    places = table.places()
    wanted = {
        op_key(op, *shape)
        for place in places
        for shape in place.edge_shapes()
        for op in OPS
        if op != "none"
    }
    assert set(table.ops) == wanted
    fixed = ["stem", *(f"cell{p.index}.preprocess{k}" for p in places for k in (0, 1)), "head"]
    assert list(table.fixed) == fixed
    assert all(math.isfinite(ms) and ms >= 0 for ms in _every_time(table))
    assert table.call_overhead_ms > 0
    # (a block this small can time under the call overhead here, so its entry may be 0: the
    # arithmetic of the entries is checked with fixed timings below)
    # an identity edge is free; the first cell's two identical preprocessing blocks (both read
    # the stem output) were timed once and recorded under both keys
    assert table.ops[op_key("skip_connect", 4, 8, 4, 1)] == 0.0
    assert table.fixed["cell0.preprocess0"] == table.fixed["cell0.preprocess1"]


def test_entries_are_block_time_less_overhead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fixed timings (call i: 1 + i/4 ms; the overhead graph is call 0) every timed block's
    entry is its time less the overhead's, an identity is free, and a block timed once for two
    places is recorded under both keys."""

    def fake(calls: list[Any], warmup: int, repeats: int) -> list[float]:
        return [1.0 + i / 4 for i in range(len(calls))]

    monkeypatch.setattr(latency_blocks, "time_interleaved", fake)
    table = profile_latency(tiny(fit_networks=1), tmp_path / "lut.json", progress=False)
    assert table.call_overhead_ms == 1.0
    identities = {op_key("skip_connect", 4, 8, 4, 1), op_key("skip_connect", 8, 4, 2, 1)}
    assert all(table.ops[key] == 0.0 for key in identities)
    timed = [ms for key, ms in [*table.ops.items(), *table.fixed.items()] if key not in identities]
    assert all(ms > 0 and (4 * ms).is_integer() for ms in timed)
    assert table.fixed["stem"] == 0.25  # the first block timed after the overhead graph
    assert table.fixed["cell0.preprocess0"] == table.fixed["cell0.preprocess1"]
    assert len(set(timed)) == len(timed) - 1  # only the shared preprocessing entry repeats


def test_measure_models_builds_each_student_at_its_structure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Students of two macros and a teacher in one window: each student is built with its own
    number of cells, every label comes back, and a structure for an unknown label is refused."""
    built: list[Any] = []

    def record(net: Any, size: Any, target: Any, work: Any, seed: int = 0) -> Any:
        built.append(net)
        return lambda: None

    monkeypatch.setattr(latency_blocks, "network_call", record)
    monkeypatch.setattr(latency_blocks, "time_interleaved", lambda calls, w, r: [1.0, 2.0, 3.0])
    genotype = random_genotype(OPS, 2, np.random.default_rng(0), multiplier=2)
    shallow = tiny(layers=2, reduction_positions=(1,))
    times = measure_models(
        {"deep": genotype, "shallow": genotype}, tiny(), teachers=("resnet18",),
        structures={"shallow": shallow},
    )  # fmt: skip
    assert times == {"deep": 1.0, "shallow": 2.0, "resnet18": 3.0}
    assert [len(net.backbone.cells) for net in built[:2]] == [3, 2]
    with pytest.raises(KdasError, match="unknown students"):
        measure_models({"deep": genotype}, tiny(), structures={"other": shallow})


def test_table_loads_back_and_predicts(fp32_table: tuple[LatencyTable, Path]) -> None:
    _, path = fp32_table
    loaded = load_latency_table(path)
    assert loaded.fingerprint == machine_fingerprint("ort-fp32", 1, 1)
    assert loaded.input_size == (32, 16) and loaded.macro.steps == 2
    assert loaded.correction.networks == 2 and loaded.correction.a > 0
    assert len(loaded.settings["correction_fit"]) == 2
    assert loaded.settings["ops"] == OPS and loaded.settings["repeats"] == 2
    teacher = loaded.teacher or {}
    assert teacher["name"] == "resnet18" and teacher["ms"] > 0
    assert teacher["input_size"] == [32, 16]
    genotype = random_genotype(OPS, 2, np.random.default_rng(3), multiplier=2)
    prediction = loaded.predict(genotype)
    assert prediction.raw_ms == pytest.approx(prediction.edges_ms + loaded.fixed_ms())
    assert math.isfinite(prediction.ms)
    assert prediction.ms == pytest.approx(loaded.correction.apply(prediction.raw_ms))


def test_random_genotype_is_derivation_shaped() -> None:
    primitives = ("none", "skip_connect", "conv_3x3")
    first = random_genotype(primitives, 4, np.random.default_rng(0), multiplier=3)
    assert first == random_genotype(primitives, 4, np.random.default_rng(0), multiplier=3)
    for cell in (first.normal, first.reduce):
        for node in range(4):
            (op_a, j_a), (op_b, j_b) = cell[2 * node : 2 * node + 2]
            assert j_a != j_b and min(j_a, j_b) >= 0 and max(j_a, j_b) <= node + 1
            assert {op_a, op_b} <= {"skip_connect", "conv_3x3"}
    assert first.normal_concat == first.reduce_concat == (3, 4, 5)
    assert load_genotype(first, steps=4) == first  # valid for the student builder


def test_fit_correction() -> None:
    exact = fit_correction([1.0, 2.0, 4.0], [2.5, 4.5, 8.5])
    assert (exact.a, exact.b, exact.networks) == (pytest.approx(2.0), pytest.approx(0.5), 3)
    assert exact.median_abs_error == pytest.approx(0.0, abs=1e-12)
    one = fit_correction([2.0], [3.0])
    assert (one.a, one.b, one.networks) == (1.5, 0.0, 1)
    inverted = fit_correction([1.0, 2.0], [3.0, 1.0])  # noise, not a law: keep the ratio
    assert inverted.a == pytest.approx(4.0 / 3.0) and inverted.b == 0.0
    # blocks too small to time above the call overhead: the networks' mean is all offset
    zero = fit_correction([0.0, 0.0], [0.2, 0.3])
    assert (zero.a, zero.b) == (1.0, pytest.approx(0.25)) and zero.apply(0.0) > 0
    assert zero.median_abs_error == pytest.approx((0.05 / 0.2 + 0.05 / 0.3) / 2)
    steep = fit_correction([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])  # a = 2, b = -1
    assert steep.apply(0.25) == 0.0 and steep.apply(2.0) == pytest.approx(3.0)


def test_spearman_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    x, y = [1.0, 2.0, 2.0, 5.0, 3.0, 9.0], [2.0, 1.0, 4.0, 4.0, 6.0, 8.0]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert spearman([1.0], [2.0]) is None and spearman([1.0, 1.0], [1.0, 2.0]) is None


def test_int8_profile_and_its_blocks_are_quantized(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    cfg = tiny(backend="ort-int8", ops=["none", "conv_3x3"], fit_networks=1)
    table = profile_latency(cfg, tmp_path / "int8.json", progress=False)
    assert load_latency_table(tmp_path / "int8.json").correction.networks == 1
    assert all(math.isfinite(ms) and ms >= 0 for ms in _every_time(table))
    spec = latency_blocks.BlockSpec("op", 4, 4, 8, 4, 1, "conv_3x3")
    path = latency_blocks.block_onnx(spec, cfg.target(), tmp_path)
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)


def _no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the profile started measuring")

    monkeypatch.setattr(latency_blocks, "overhead_call", fail)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is here")
def test_tensorrt_without_cuda_fails_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_work(monkeypatch)
    with pytest.raises(BackendUnavailable) as info:
        profile_latency(tiny(backend="tensorrt-fp16"), tmp_path / "trt.json", progress=False)
    assert info.value.exit_code == 2 and "TensorRT" in str(info.value)
    assert not (tmp_path / "trt.json").exists()


def test_bad_out_fails_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_work(monkeypatch)
    with pytest.raises(KdasError, match="is a folder"):
        profile_latency(tiny(), tmp_path, progress=False)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(KdasError, match="--force"):
        profile_latency(tiny(), tmp_path / "old.json", progress=False)
    with pytest.raises(KdasError, match="unknown latency backend"):
        profile_latency(tiny(backend="onnx"), tmp_path / "new.json", progress=False)


def test_cli_profile_then_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    lut = tmp_path / "lut.json"
    profile = [
        "latency", "profile", "--backend", "ort-fp32", "--size", "32x16", "--C", "4",
        "--threads", "1", "--ops", "none,skip_connect,conv_1x1", "--teacher", "none",
        "--repeats", "2", "--warmup", "1", "--fit-networks", "1", "--out", str(lut),
    ]  # fmt: skip
    result = runner.invoke(app, profile)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "correction" in result.output
    table = load_latency_table(lut)
    assert table.macro.layers == 8 and table.teacher is None  # defaults: ProfileConfig's
    again = runner.invoke(app, profile)
    assert again.exit_code != 0 and "--force" in str(again.exception)

    report_path = tmp_path / "report.json"
    args = ["latency", "validate", "--table", str(lut), "--count", "3", "--out", str(report_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Spearman" in result.output
    report = json.loads(report_path.read_text())
    assert len(report["rows"]) == 3 and report["backend"] == "ort-fp32"
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] >= 0 for r in report["rows"])
    assert set(report["corrected"]) == {"spearman", "median_abs_error"}


def test_cli_profile_takes_the_student_macro(tmp_path: Path) -> None:
    """--layers/--reductions reach the table (a shallower student needs its own table), and a
    reduction outside the cells fails before any work."""
    base = [
        "latency", "profile", "--backend", "ort-fp32", "--size", "32x16", "--C", "4",
        "--threads", "1", "--ops", "none,skip_connect,conv_1x1", "--teacher", "none",
        "--repeats", "1", "--warmup", "0", "--fit-networks", "0",
    ]  # fmt: skip
    runner = CliRunner()
    lut = tmp_path / "shallow.json"
    result = runner.invoke(app, [*base, "--layers", "3", "--reductions", "1", "--out", str(lut)])
    assert result.exit_code == 0, result.output
    macro = load_latency_table(lut).macro
    assert (macro.layers, tuple(macro.reduction_positions)) == (3, (1,))
    bad = runner.invoke(app, [*base, "--layers", "3", "--reductions", "5", "--out", str(lut)])
    assert bad.exit_code != 0 and "outside the 3 cells" in str(bad.exception) + bad.output
    assert load_latency_table(lut).macro.layers == 3  # the table written before is untouched


def test_validate_refuses_a_foreign_table(fp32_table: tuple[LatencyTable, Path]) -> None:
    _, path = fp32_table
    foreign = load_latency_table(path)
    foreign.fingerprint = {**foreign.fingerprint, "device": "another CPU"}
    with pytest.raises(KdasError, match="allow-foreign-lut"):
        validate_predictor(foreign, count=1, progress=False)


def test_openvino_fp32_profile(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    cfg = tiny(backend="openvino-fp32", ops=["none", "sep_conv_3x3"], fit_networks=1)
    table = profile_latency(cfg, tmp_path / "ov.json", progress=False)
    loaded = load_latency_table(tmp_path / "ov.json")
    assert loaded.fingerprint["backend"] == "openvino-fp32"
    assert loaded.fingerprint["backend_version"] == table.fingerprint["backend_version"]
    assert all(math.isfinite(ms) and ms >= 0 for ms in _every_time(loaded))
    assert loaded.correction.networks == 1
