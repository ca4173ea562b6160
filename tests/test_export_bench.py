"""`kdas bench` on tiny models: the three files and their content (no timing assertions), the
OpenVINO backends (measured, or absent with a reason), and each model on its best backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from export_models import save_student, save_teacher

from kdas.cli.app import main

pytest.importorskip("onnxruntime")
SIZE = (128, 64)
OPENVINO = ("openvino-fp32", "openvino-bf16", "openvino-int8")


def test_bench_writes_json_markdown_and_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from kdas.models import load

    student = save_student(tmp_path / "run" / "student")
    teacher = save_teacher(tmp_path / "run" / "teacher")
    main(["bench", "--student", str(student), "--teacher", str(teacher),
          "--backends", "torch,onnx,tensorrt", "--batch", "1,2", "--size", "128x64",
          "--repeats", "3", "--warmup", "1", "--threads", "1", "--exporter", "legacy",
          "--profile-batch", "1"])  # fmt: skip
    out_dir = tmp_path / "run" / "export"  # default: beside the exports
    assert "measurements ->" in capsys.readouterr().out
    result = json.loads((out_dir / "bench.json").read_text())

    rows = result["results"]
    keys = {(r["model"], r["backend"], r["batch"]) for r in rows}
    assert keys == {
        (m, b, n) for m in ("student", "teacher") for b in ("torch", "onnx", "tensorrt")
        for n in (1, 2)
    }  # fmt: skip
    absent = [r for r in rows if r["backend"] == "tensorrt"]
    assert all(r["status"] == "absent" and "TensorRT" in r["reason"] for r in absent)
    assert "\n" not in result["absent"]["tensorrt"]
    peak = result["peak_gflops"]["fp32"]
    assert peak > 0 and result["threads"]["torch"] == 1
    for r in (r for r in rows if r["status"] == "ok"):
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["runs"] == 3 and r["images_per_s"] > 0
        flops = result["models"][r["model"]]["flops"]
        assert r["floor_ms"] == pytest.approx(r["batch"] * flops / peak / 1e6)
        assert r["x_floor"] == pytest.approx(r["p50_ms"] / r["floor_ms"])
        assert r["peak_mb"] is None or r["peak_mb"] >= 0

    for role, path in (("student", student), ("teacher", teacher)):
        net = load(str(path)).model
        facts = result["models"][role]
        total = sum(p.numel() for p in net.parameters())
        assert facts["parameters_with_classifier"] == total
        assert facts["parameters"] == total - 5 * net.embedding_dim  # no 5-class classifier
        assert facts["embedding_dim"] == net.embedding_dim
    # FLOPs of the first convolution alone bound the teacher's from below.
    conv1 = 2 * 64 * 3 * 7 * 7 * (SIZE[0] // 2) * (SIZE[1] // 2)
    assert result["models"]["teacher"]["flops"] > conv1
    ratios = result["ratios"]
    assert ratios["parameters"] == pytest.approx(
        result["models"]["student"]["parameters"] / result["models"]["teacher"]["parameters"]
    )
    assert {(p["backend"], p["batch"]) for p in ratios["per_backend"]} == {
        (b, n) for b in ("torch", "onnx") for n in (1, 2)
    }
    profile = result["profiles"]["student/onnx"]
    assert profile["batch"] == 1 and profile["ops"]
    assert sum(o["share"] for o in profile["ops"]) == pytest.approx(1.0)
    assert "Conv" in {o["op"] for o in profile["ops"]}

    markdown = (out_dir / "bench.md").read_text()
    assert "| model | backend | batch | p50 ms" in markdown
    assert "tensorrt: " in markdown and "Student / teacher" in markdown
    assert markdown.count("| student | onnx |") == 2
    with Image.open(out_dir / "bench.png") as image:
        assert image.format == "PNG" and image.size[0] > 400


def test_bench_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = save_teacher(tmp_path / "teacher")
    for args, message in (
        (["--teacher", str(teacher), "--backends", "torch,gpu-magic"], "unknown backend"),
        (["--teacher", str(teacher), "--backends", "openvino-fp16"], "openvino-int8"),
        (["--teacher", str(teacher), "--batch", "0"], "batch sizes must be positive"),
        ([], "--student and/or --teacher"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", *args, "--out", str(tmp_path / "b")])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def openvino_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny bench run of student and teacher on ONNX Runtime and the OpenVINO backends."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from kdas.export.bench import BenchConfig, run_bench

    run = tmp_path_factory.mktemp("ov-run")
    cfg = BenchConfig(
        backends=("onnx", *OPENVINO), batches=(1, 2), size=SIZE, repeats=2, warmup=1,
        threads=1, exporter="legacy", calib_images=8,
    )  # fmt: skip
    student, teacher = save_student(run / "student"), save_teacher(run / "teacher")
    return run_bench(student, teacher, run / "bench", cfg, progress=False)


def test_openvino_backends_are_measured(openvino_bench: dict[str, Any]) -> None:
    import openvino

    from kdas.runtime.openvino_model import cpu_capabilities

    result = openvino_bench
    rows = {(r["model"], r["backend"], r["batch"]): r for r in result["results"]}
    assert set(rows) == {
        (m, b, n) for m in ("student", "teacher") for b in ("onnx", *OPENVINO) for n in (1, 2)
    }
    has_bf16 = "BF16" in cpu_capabilities()
    for (_, backend, _), row in rows.items():
        if backend == "openvino-bf16" and not has_bf16:
            assert row["status"] == "absent" and "bf16" in row["reason"]
            continue
        assert row["status"] == "ok", row
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["runs"] == 2
    assert result["machine"]["openvino"] == openvino.__version__
    assert result["threads"]["openvino"] == 1
    assert set(result["backends"]) == {"onnx", *OPENVINO}
    assert "INFERENCE_PRECISION_HINT f32" in result["backends"]["openvino-fp32"]
    measured = {backend for backend in OPENVINO if ("student", backend, 1) in rows}
    per_backend = {p["backend"] for p in result["ratios"]["per_backend"]}
    assert {"openvino-fp32", "openvino-int8"} <= per_backend <= measured | {"onnx"}
    markdown = (Path(result["written_to"]) / "bench.md").read_text()
    assert f"openvino {openvino.__version__} (inference threads: 1)" in markdown
    assert markdown.count("| teacher | openvino-int8 |") == 2


def test_best_backend_is_each_models_fastest(
    openvino_bench: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from kdas.export.report import render_bench

    result = openvino_bench
    ok = [r for r in result["results"] if r["status"] == "ok"]
    assert [b["batch"] for b in result["best"]] == [1, 2]
    for best in result["best"]:
        for role in ("student", "teacher"):
            mine = [r for r in ok if r["model"] == role and r["batch"] == best["batch"]]
            fastest = min(mine, key=lambda r: r["p50_ms"])
            assert best[role]["backend"] == fastest["backend"]
            assert best[role]["p50_ms"] == fastest["p50_ms"] == min(r["p50_ms"] for r in mine)
        ratio = best["student"]["p50_ms"] / best["teacher"]["p50_ms"]
        assert best["latency"] == pytest.approx(ratio)
    saved = json.loads((Path(result["written_to"]) / "bench.json").read_text())
    assert saved["best"] == result["best"]
    markdown = (Path(result["written_to"]) / "bench.md").read_text()
    assert "## Each model on its best backend" in markdown
    first = result["best"][0]
    row = f"| 1 | {first['student']['backend']} | {first['student']['p50_ms']:.2f} |"
    assert row in markdown
    render_bench(result)
    out = capsys.readouterr().out
    assert "Each model on its best backend" in out
    line = next(x for x in out.splitlines() if x.startswith("best at batch 1:"))
    assert f"teacher {first['teacher']['backend']}" in line and f"({first['latency']:.3f}x)" in line


def test_best_needs_no_teacher(tmp_path: Path) -> None:
    from kdas.export.bench import BenchConfig, run_bench

    cfg = BenchConfig(backends=("torch", "onnx"), batches=(1,), size=SIZE, repeats=2, warmup=0,
                      threads=1, exporter="legacy")  # fmt: skip
    result = run_bench(save_student(tmp_path / "student"), None, tmp_path / "b", cfg, False)
    (best,) = result["best"]
    fastest = min(result["results"], key=lambda r: r["p50_ms"])
    assert best["student"]["backend"] == fastest["backend"]
    assert "teacher" not in best and "latency" not in best


def test_openvino_absent_gives_one_line_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without OpenVINO every openvino row is absent with the install hint; without CPU bf16
    only the bf16 row is, with the reason; the other backends are still measured."""
    from kdas.export.bench import BenchConfig, run_bench

    student = save_student(tmp_path / "student")
    cfg = BenchConfig(backends=("onnx", *OPENVINO), batches=(1,), size=SIZE, repeats=2,
                      warmup=0, threads=1, exporter="legacy")  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "openvino", None)  # `import openvino` fails as if missing
        result = run_bench(student, None, tmp_path / "none", cfg, progress=False)
    status = {r["backend"]: r["status"] for r in result["results"]}
    assert status == {"onnx": "ok", **dict.fromkeys(OPENVINO, "absent")}
    assert result["machine"]["openvino"] is None
    for backend in OPENVINO:
        reason = result["absent"][backend]
        assert "\n" not in reason and "kdas[openvino]" in reason
    markdown = (tmp_path / "none" / "bench.md").read_text()
    assert "- openvino-int8: OpenVINO is not installed" in markdown

    pytest.importorskip("openvino")
    from kdas.runtime import openvino_model

    monkeypatch.setattr(openvino_model, "cpu_capabilities", lambda: ["FP32", "INT8"])
    cfg.backends = ("openvino-bf16",)
    result = run_bench(student, None, tmp_path / "no-bf16", cfg, progress=False)
    (row,) = result["results"]
    assert row["status"] == "absent" and "no bf16 support" in row["reason"]
    assert "\n" not in row["reason"] and result["best"] == []
