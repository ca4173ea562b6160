"""The accuracy-against-latency picture: points read from run folders, the front, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdas.errors import KdasError
from kdas.pipeline.pareto import front, pareto_points, write_pareto


def _run(root: Path, name: str, mAP: float, ms: float, target: str | None) -> Path:
    run = root / name
    for role, value in (("student", mAP), ("teacher", 0.8)):
        (run / "eval" / role).mkdir(parents=True)
        metrics = {"metrics": {"mAP": value, "rank1": value + 0.05}}
        (run / "eval" / role / "metrics.json").write_text(json.dumps(metrics))
    (run / "export").mkdir()
    best = [
        {"batch": 1, "student": {"backend": "openvino-int8", "p50_ms": ms},
         "teacher": {"backend": "openvino-int8", "p50_ms": 10.0}},
        {"batch": 8, "student": {"backend": "onnx", "p50_ms": 99.0}},
    ]  # fmt: skip
    (run / "export" / "bench.json").write_text(json.dumps({"best": best, "machine": {"cpu": "X"}}))
    (run / "search").mkdir()
    config = {"config": {"latency": {"target": target or ""}}}
    (run / "search" / "config.json").write_text(json.dumps(config))
    return run


def test_points_front_and_files(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, "free", 0.70, 8.0, None),
        _run(tmp_path, "half", 0.69, 4.0, "0.5x-teacher"),
        _run(tmp_path, "worse", 0.60, 6.0, "0.6x-teacher"),
        _run(tmp_path, "fast", 0.65, 2.0, "0.3x-teacher"),
    ]
    points = pareto_points(runs)
    assert [p["target"] for p in points["students"]] == ["none", *["0.5x-teacher", "0.6x-teacher"],
                                                         "0.3x-teacher"]  # fmt: skip
    assert points["teacher"]["latency_ms"] == 10.0 and points["teacher"]["mAP"] == 0.8
    assert [p["run"] for p in front(points["students"])] == ["fast", "half", "free"]
    out = tmp_path / "pareto"
    write_pareto(runs, out)
    assert (out / "pareto.png").stat().st_size > 1000
    assert json.loads((out / "pareto.json").read_text())["batch"] == 1
    assert pareto_points(runs, batch=8)["teacher"] is None


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(KdasError, match="no run has both"):
        pareto_points([tmp_path / "nothing"])
    run = _run(tmp_path, "one", 0.7, 3.0, None)
    file = tmp_path / "file.png"
    file.write_text("x")
    with pytest.raises(KdasError, match="is a file"):
        write_pareto([run], file)
