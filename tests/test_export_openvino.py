"""OpenVINO IR export: numbers equal to PyTorch, kdas metadata in rt_info, INT8 and bf16 IRs that
pass parity, one-line refusals for bad requests and bad IRs, and the pipeline's export stage."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from export_models import STUDENT_SIZE, TEACHER_SIZE, data_images, save_student, save_teacher

from kdas.cli.app import main
from kdas.models import load

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/NAME with a teacher (BatchNorm adapted to the tiny set's images, so INT8 calibrates
    on realistic activations), a student, and a second teacher that differs only in weights;
    the fp32 IRs of teacher and student are written by the CLI to their default paths."""
    run = tmp_path_factory.mktemp("run")
    save_teacher(run / "teacher", images=data_images(tiny_market, TEACHER_SIZE, 48), seed=0)
    save_teacher(run / "other" / "teacher", seed=1)
    save_student(run / "student")
    for kind in ("teacher", "student"):
        main(["export", str(run / kind), "--to", "openvino", "--exporter", "legacy"])
    return run


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def _reference(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """Eval forward in PyTorch, then L2 normalisation in numpy (independent of the export)."""
    with torch.no_grad():
        f = load(str(model_dir)).model(torch.from_numpy(x)).double().numpy()
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(("kind", "size"), [("teacher", TEACHER_SIZE), ("student", STUDENT_SIZE)])
def test_fp32_ir_matches_pytorch(run_dir: Path, kind: str, size: tuple[int, int]) -> None:
    from kdas.runtime.openvino_model import OpenVINOModel

    xml = run_dir / "export" / f"{kind}.xml"  # the default output, with its .bin beside it
    assert xml.with_suffix(".bin").stat().st_size > 10_000
    model = OpenVINOModel(xml)
    assert model.info.precision == "fp32" and model.info.model_kind == kind
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, *size), dtype=np.float32)
        out, ref = model.run(x), _reference(run_dir / kind, x)
        assert out.shape == ref.shape and np.abs(ref).max() > 1e-2
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_rt_info_carries_the_model_facts(run_dir: Path) -> None:
    from kdas.export.openvino_export import OPENVINO_PRECISIONS
    from kdas.pipeline.config import OpenVINOPrecision

    assert get_args(OpenVINOPrecision) == OPENVINO_PRECISIONS  # the pipeline's list is the same
    for kind, size, dim in (("teacher", TEACHER_SIZE, 512), ("student", STUDENT_SIZE, 128)):
        model = ov.Core().read_model(str(run_dir / "export" / f"{kind}.xml"))

        def rt(name: str, model=model) -> object:
            return json.loads(model.get_rt_info(["kdas", name]).astype(str))

        config = json.loads((run_dir / kind / "config.json").read_text())
        assert rt("weights_sha256") == _sha256(run_dir / kind / "model.safetensors")
        assert rt("weights_sha256") == config["weights_sha256"]
        assert (rt("input_height"), rt("input_width")) == size
        assert rt("mean") == pytest.approx([0.485, 0.456, 0.406])
        assert rt("std") == pytest.approx([0.229, 0.224, 0.225])
        assert rt("embedding_dim") == dim and rt("model_kind") == kind
        assert rt("precision") == "fp32"
        assert model.get_rt_info(["kdas", "bin_sha256"]).astype(str) == _sha256(
            run_dir / "export" / f"{kind}.bin"
        )
        if kind == "student":
            assert rt("genotype") == config["model"]["genotype"]
        else:
            assert not model.has_rt_info(["kdas", "genotype"])


def test_cli_parity_of_the_fp32_ir(
    run_dir: Path, tiny_market: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    xml = run_dir / "export" / "teacher.xml"
    main(["parity", str(run_dir / "teacher"), str(xml), "--data", str(tiny_market),
          "--ov-device", "cpu"])  # fmt: skip
    out = capsys.readouterr().out
    assert "pass" in out and "FAIL" not in out and "backend openvino on CPU" in out
    report = json.loads((xml.parent / "parity.json").read_text())["teacher.xml"]
    assert report["passed"] and report["precision"] == "fp32"
    assert report["backend"] == "openvino" and report["device"] == "CPU"
    assert report["max_abs_diff"] <= 1e-4 and report["top10_overlap"] == 1.0


def test_int8_ir_round_trip(run_dir: Path, tiny_market: Path, tmp_path: Path) -> None:
    from kdas.export.api import export_model
    from kdas.export.parity import THRESHOLDS, check_parity
    from kdas.runtime.openvino_model import read_ir

    xml = export_model(run_dir / "teacher", "openvino", out=tmp_path / "t.int8.xml",
                       precision="int8", calib_data=tiny_market, calib_images=32)  # fmt: skip
    model, info = read_ir(xml)
    assert info.precision == "int8"
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    assert xml.with_suffix(".bin").stat().st_size < 0.5 * (
        (run_dir / "export" / "teacher.bin").stat().st_size
    )  # int8 weights: about a quarter of the fp32 .bin
    report = check_parity(run_dir / "teacher", xml, tiny_market)
    assert report["passed"], report["checks"]
    assert report["map_drop"] <= THRESHOLDS["int8"][2]
    assert report["max_abs_diff"] > 1e-4  # it really runs in INT8


def test_bf16_ir_runs_where_the_cpu_has_it(
    run_dir: Path, tiny_market: Path, tmp_path: Path
) -> None:
    from kdas.export.api import export_model
    from kdas.export.parity import check_parity
    from kdas.runtime.openvino_model import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has neither AMX nor avx512_bf16: OpenVINO cannot run bf16 here")
    xml = export_model(run_dir / "teacher", "openvino", out=tmp_path / "t.bf16.xml",
                       precision="bf16", exporter="legacy")  # fmt: skip
    report = check_parity(run_dir / "teacher", xml, tiny_market)
    assert report["passed"] and report["precision"] == "bf16"
    assert report["min_cosine"] >= 0.99
    assert report["max_abs_diff"] > 1e-5  # bf16 arithmetic, not an fp32 run in disguise


def test_bf16_is_refused_on_a_cpu_without_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import kdas.runtime.openvino_model as openvino_model

    monkeypatch.setattr(openvino_model, "cpu_capabilities", lambda: ["FP32", "INT8"])
    target = tmp_path / "t.bf16.xml"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run_dir / "teacher"), "--to", "openvino", "--precision", "bf16",
              "--out", str(target)])  # fmt: skip
    assert exit_info.value.code == 2
    assert "no bf16 support" in _one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_export_requests_are_checked_before_any_work(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "folder").mkdir()
    before = _tree_digest(run_dir)
    for args, message in (
        (["--precision", "fp16"], "unknown OpenVINO precision 'fp16'"),
        (["--precision", "int8"], "INT8 needs calibration images"),
        (["--int8"], "use --precision bf16|int8"),
        (["--out", str(tmp_path / "folder")], "is a folder"),
        (["--out", str(tmp_path / "model.onnx")], "is written as NAME.xml"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["export", str(run_dir / "teacher"), "--to", "openvino", *args])
        assert exit_info.value.code == 1
        assert message in _one_error_line(capsys)
    assert _tree_digest(run_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]


@pytest.fixture(scope="module")
def bad_irs(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An .xml without its .bin, one beside another model's .bin of the same size, and an IR
    that OpenVINO converted from an ONNX file without kdas metadata."""
    import onnx

    from kdas.export.api import export_model

    bad = tmp_path_factory.mktemp("bad")
    other = export_model(run_dir / "other" / "teacher", "openvino", exporter="legacy")
    ours = run_dir / "export" / "teacher.xml"
    assert other.with_suffix(".bin").stat().st_size == ours.with_suffix(".bin").stat().st_size
    shutil.copyfile(ours, bad / "lonely.xml")
    shutil.copyfile(ours, bad / "swapped.xml")
    shutil.copyfile(other.with_suffix(".bin"), bad / "swapped.bin")
    plain = export_model(run_dir / "teacher", "onnx", out=bad / "plain.onnx", exporter="legacy")
    proto = onnx.load(str(plain))
    del proto.metadata_props[:]
    onnx.save(proto, str(plain))
    ov.save_model(ov.convert_model(str(plain)), str(bad / "plain.xml"), compress_to_fp16=False)
    return {"lonely": bad / "lonely.xml", "swapped": bad / "swapped.xml",
            "plain": bad / "plain.xml", "good": ours}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("lonely", [], "has no weights file lonely.bin"),
        ("swapped", [], "swapped.bin does not belong to swapped.xml"),
        ("plain", [], "has no kdas metadata"),
        ("good", ["--ov-device", "TPU"], "unknown OpenVINO device 'TPU'"),
    ],
)
def test_bad_irs_get_one_line_and_change_nothing(
    run_dir: Path,
    bad_irs: dict[str, Path],
    tiny_market: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    extra: list[str],
    message: str,
) -> None:
    xml = bad_irs[name]
    folders = (xml.parent, run_dir / "teacher")
    before = [_tree_digest(f) for f in folders]
    with pytest.raises(SystemExit) as exit_info:
        main(["parity", str(run_dir / "teacher"), str(xml), "--data", str(tiny_market), *extra])
    assert exit_info.value.code == 1
    assert message in _one_error_line(capsys)
    assert [_tree_digest(f) for f in folders] == before


def test_ov_device_is_for_irs_only(run_dir: Path, tiny_market: Path, tmp_path: Path) -> None:
    from kdas.errors import KdasError
    from kdas.export.api import export_model
    from kdas.export.parity import check_parity

    onnx_file = export_model(run_dir / "teacher", "onnx", out=tmp_path / "t.onnx",
                             exporter="legacy")  # fmt: skip
    with pytest.raises(KdasError, match="--ov-device applies to OpenVINO IRs"):
        check_parity(run_dir / "teacher", onnx_file, tiny_market, device="CPU")
    with pytest.raises(KdasError, match="other weights"):  # the pipeline's shortcut is checked
        export_model(run_dir / "other" / "teacher", "openvino", from_onnx=onnx_file)


def test_pipeline_export_parity_and_report_with_openvino(
    run_dir: Path, tiny_market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export stage writes both models' IRs from its own ONNX files, skips bf16 with one
    log line on a CPU without it, parity checks every IR, the report lists files and rows."""
    import kdas.runtime.openvino_model as openvino_model
    from kdas.pipeline.config import ExportStageConfig, ParityStageConfig, PipelineConfig
    from kdas.pipeline.report import write_report
    from kdas.pipeline.runner import RunPaths, StageContext
    from kdas.pipeline.stages import _bench_files, export_stage, parity_stage

    root = tmp_path / "run"
    for kind in ("teacher", "student"):
        shutil.copytree(run_dir / kind, root / kind)
    cfg = PipelineConfig(
        export=ExportStageConfig(int8=False, openvino=True, openvino_precisions=("fp32", "bf16")),
        parity=ParityStageConfig(num_images=12),
    )
    cfg.data.root = str(tiny_market)
    ctx = StageContext(cfg, RunPaths(root), resume=False, force=False, results={})
    monkeypatch.setattr(openvino_model, "cpu_capabilities", lambda: ["FP32", "INT8"])
    ctx.results["export"] = export_stage(ctx)
    files = ctx.results["export"]["files"]
    assert set(files) == {"student.onnx", "teacher.onnx", "student.xml", "teacher.xml"}
    assert set(ctx.results["export"]["skipped"]) == {"student.bf16.xml", "teacher.bf16.xml"}
    assert "no bf16 support" in ctx.results["export"]["skipped"]["teacher.bf16.xml"]
    assert _bench_files(files)["teacher"] == {
        "onnx": files["teacher.onnx"],
        "openvino-fp32": files["teacher.xml"],
    }
    ctx.results["parity"] = parity = parity_stage(ctx)
    assert parity["teacher.xml"]["passed"] and parity["student.xml"]["passed"]
    assert parity["teacher.xml"]["backend"] == "openvino"
    page = write_report(ctx).read_text()
    assert "teacher.xml + teacher.bin" in page and "student.bf16.xml" in page
    assert page.count("<td>openvino CPU</td>") == 2
