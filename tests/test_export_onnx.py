"""ONNX export: checker, single file, numbers equal to PyTorch, metadata the runtime reads back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_models import STUDENT_SIZE, TEACHER_SIZE, save_student, save_teacher

from kdas.cli.app import main
from kdas.errors import KdasError
from kdas.export.onnx_export import export_onnx
from kdas.models import load

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/NAME with teacher/ and student/ exported to the default path: the student with the
    default (auto: dynamo) exporter, the teacher with the legacy one, so both are covered."""
    run = tmp_path_factory.mktemp("run")
    save_teacher(run / "teacher")
    save_student(run / "student")
    export_onnx(run / "teacher", exporter="legacy")
    export_onnx(run / "student")
    return run


def _reference(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """Eval forward in PyTorch, then L2 normalisation in numpy (independent of the export)."""
    net = load(str(model_dir)).model
    with torch.no_grad():
        f = net(torch.from_numpy(x)).double().numpy()
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize(("kind", "size"), [("teacher", TEACHER_SIZE), ("student", STUDENT_SIZE)])
def test_export_checks_and_matches_pytorch(run_dir: Path, kind: str, size: tuple) -> None:
    from kdas.runtime.session import create_session

    path = run_dir / "export" / f"{kind}.onnx"  # the default output: MODEL_DIR/../export/
    assert sorted(p.name for p in path.parent.iterdir()) == ["student.onnx", "teacher.onnx"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "images" and graph_output.name == "embeddings"
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, *size]
    session = create_session(path, providers="cpu")
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, *size), dtype=np.float32)
        out = session.run(None, {"images": x})[0]
        ref = _reference(run_dir / kind, x)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
        assert np.abs(ref).max() > 1e-2  # a real signal
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_metadata_round_trip(run_dir: Path) -> None:
    from kdas.runtime.session import read_model_info

    for kind, size, dim in (("teacher", TEACHER_SIZE, 512), ("student", STUDENT_SIZE, 128)):
        info = read_model_info(run_dir / "export" / f"{kind}.onnx")
        weights = (run_dir / kind / "model.safetensors").read_bytes()
        config = json.loads((run_dir / kind / "config.json").read_text())
        assert info.weights_sha256 == hashlib.sha256(weights).hexdigest()
        assert info.weights_sha256 == config["weights_sha256"]
        names = (info.model_kind, info.input_name, info.output_name)
        assert names == (kind, "images", "embeddings")
        assert (info.input_height, info.input_width) == size
        assert info.embedding_dim == dim and info.precision == "fp32" and info.l2_normalized
        assert info.mean == pytest.approx((0.485, 0.456, 0.406))
        assert info.std == pytest.approx((0.229, 0.224, 0.225))


def test_dynamo_graph_is_smaller_than_legacy(run_dir: Path, tmp_path: Path) -> None:
    """The documented reason for the default exporter: the same numbers with fewer nodes."""
    from kdas.runtime.session import create_session

    legacy = export_onnx(run_dir / "student", tmp_path / "legacy.onnx", exporter="legacy")
    default = run_dir / "export" / "student.onnx"
    assert "dynamo exporter" in onnx.load(str(default)).doc_string
    n_legacy = len(onnx.load(str(legacy)).graph.node)
    n_dynamo = len(onnx.load(str(default)).graph.node)
    assert n_dynamo < 0.8 * n_legacy, (n_dynamo, n_legacy)
    x = np.random.default_rng(1).standard_normal((2, 3, *STUDENT_SIZE), dtype=np.float32)
    a = create_session(legacy, providers="cpu").run(None, {"images": x})[0]
    b = create_session(default, providers="cpu").run(None, {"images": x})[0]
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_cli_export_and_errors(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.onnx"
    main(["export", str(run_dir / "teacher"), "--exporter", "legacy", "--opset", "17",
          "--out", str(out)])  # fmt: skip
    assert f"wrote {out}" in capsys.readouterr().out
    assert onnx.load(str(out)).opset_import[0].version == 17
    with pytest.raises(KdasError, match=r"config\.json is missing"):
        export_onnx(tmp_path)
    with pytest.raises(KdasError, match="opset 9 is outside"):
        export_onnx(run_dir / "teacher", tmp_path / "x.onnx", opset=9)
    with pytest.raises(KdasError, match="unknown exporter"):
        export_onnx(run_dir / "teacher", tmp_path / "x.onnx", exporter="magic")
    for args, message in (
        (["--fp16", "--int8"], "choose one of --fp16 and --int8"),
        (["--int8"], "INT8 needs calibration images"),
        (["--to", "coreml"], "unknown export target"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["export", str(run_dir / "teacher"), *args])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "x.onnx").exists()
