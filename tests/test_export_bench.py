"""`kdas bench` on tiny models: the three files and their content (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_models import save_student, save_teacher

from kdas.cli.app import main

pytest.importorskip("onnxruntime")
SIZE = (128, 64)


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
        (["--teacher", str(teacher), "--batch", "0"], "batch sizes must be positive"),
        ([], "--student and/or --teacher"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", *args, "--out", str(tmp_path / "b")])
        assert exit_info.value.code == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
