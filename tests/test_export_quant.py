"""INT8 (ONNX Runtime static QDQ) and FP16 exports: their graphs, metadata and parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_models import TEACHER_SIZE, data_images, save_teacher

from kdas.export.api import export_model
from kdas.export.parity import check_parity
from kdas.models import load

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def market40(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 identities (20 test: 40 queries, ~220 gallery): enough queries that a 1-point mAP
    threshold means something (one query's AP moves the mean by 1/40 of its change)."""
    from kdas.data.synthetic import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("market40")
    return synthesize(
        out, SynthConfig(ids=40, cameras=4, images_per_camera=3, size=(64, 32), seed=1)
    )


@pytest.fixture(scope="module")
def teacher(market40: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    return save_teacher(run / "teacher", images=data_images(market40, TEACHER_SIZE, 96))


def test_int8_graph_metadata_and_map(teacher: Path, market40: Path) -> None:
    from kdas.runtime.session import read_model_info

    path = export_model(teacher, int8=True, calib_data=market40, calib_images=48, exporter="legacy")
    assert path == teacher.parent / "export" / "teacher.int8.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {t.name: t for t in model.graph.initializer}
    # S8 weights with one scale per output channel; U8 activations.
    weights = [
        t for t in inits.values() if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4
    ]
    assert len(weights) == sum(n.op_type == "Conv" for n in model.graph.node) == 20
    per_channel = [
        n for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in {t.name for t in weights}
    ]  # fmt: skip
    assert per_channel and all(len(inits[n.input[1]].dims) == 1 for n in per_channel)
    act_zero_points = [
        inits[n.input[2]] for n in model.graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2
    ]  # fmt: skip
    assert act_zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in act_zero_points)
    # The L2 normalisation stays float: the output is unit length in float32.
    info = read_model_info(path)
    assert info.precision == "int8"
    assert info.weights_sha256 == load(str(teacher)).weights_sha256
    assert (info.input_height, info.input_width) == TEACHER_SIZE

    report = check_parity(teacher, path, market40, "market1501")
    assert report["num_query"] == 40 and report["num_gallery"] > 150
    assert report["torch"]["mAP"] > 0.08  # well above chance (~0.03) on this data
    assert report["max_abs_diff"] > 1e-3  # INT8 really changed the embeddings...
    assert report["map_drop"] <= 0.01 and report["passed"]  # ...but not the retrieval
    assert report["top10_overlap"] > 0.7
    assert [c["name"] for c in report["checks"]] == ["same_weights", "map_drop"]


def test_fp16_keeps_float32_io_and_passes_parity(teacher: Path, market40: Path) -> None:
    from kdas.runtime.session import create_session, read_model_info

    path = export_model(teacher, fp16=True, exporter="legacy")
    assert path.name == "teacher.fp16.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    float16 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert sum(int(np.prod(t.dims)) for t in float16) > 1_000_000  # the conv weights
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert read_model_info(path).precision == "fp16"
    x = np.random.default_rng(0).standard_normal((2, 3, *TEACHER_SIZE), dtype=np.float32)
    out = create_session(path, providers="cpu").run(None, {"images": x})[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)

    report = check_parity(teacher, path, market40, "market1501", num_images=30)
    assert report["min_cosine"] >= 0.999 and report["passed"]
    assert report["max_abs_diff"] > 1e-6  # it is not the fp32 graph under another name
    assert [c["name"] for c in report["checks"]] == ["same_weights", "min_cosine"]


def test_calibration_option_errors(teacher: Path, tmp_path: Path) -> None:
    from kdas.errors import KdasError
    from kdas.export.quantize import quantize_int8

    source = tmp_path / "never-read.onnx"
    with pytest.raises(KdasError, match="at most 64 images"):
        quantize_int8(source, tmp_path / "q.onnx", ["img.jpg"] * 65, method="percentile")
    with pytest.raises(KdasError, match="unknown calibration method"):
        quantize_int8(source, tmp_path / "q.onnx", ["img.jpg"], method="kl")
    with pytest.raises(KdasError, match="needs calibration images"):
        quantize_int8(source, tmp_path / "q.onnx", [])


def test_calibration_uses_every_batch(teacher: Path, market40: Path, tmp_path: Path) -> None:
    """Regression: with onnxruntime's CalibMaxIntermediateOutputs set, a batch count that is a
    multiple of it failed ("No data is collected") and other counts kept only the last batches.
    Calibrating on 64 images (4 batches of 16) must work and use the brightest batch too."""
    from kdas.export.calibration import calibration_paths
    from kdas.export.onnx_export import export_onnx
    from kdas.export.quantize import quantize_int8

    fp32 = export_onnx(teacher, tmp_path / "t.onnx", exporter="legacy")
    paths = calibration_paths(market40, "market1501", 64)
    first_scale = None
    for name, order in (("as_is", paths), ("bright_first", _brightest_first(paths))):
        out = quantize_int8(fp32, tmp_path / f"{name}.int8.onnx", order)
        model = onnx.load(str(out))
        scale = _input_scale(model)
        if first_scale is None:
            first_scale = scale
        # the same images in another order give the same ranges: nothing was dropped
        assert scale == pytest.approx(first_scale, rel=1e-6)


def _brightest_first(paths: list[str]) -> list[str]:
    from PIL import Image

    return sorted(paths, key=lambda p: -float(np.asarray(Image.open(p).convert("L")).mean()))


def _input_scale(model) -> float:
    """Scale of the first QuantizeLinear (the network input's range)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    first = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    return float(inits[first.input[1]])
