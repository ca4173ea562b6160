"""Parity: an export of the same weights passes, another model's export fails (exit code 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_models import save_teacher

from kdas.cli.app import main
from kdas.errors import KdasError
from kdas.export.onnx_export import export_onnx
from kdas.export.parity import check_parity

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Teacher A with its export, and the export of teacher B (other weights) beside it."""
    run = tmp_path_factory.mktemp("run")
    a = save_teacher(run / "teacher", seed=0)
    b = save_teacher(run / "other", seed=1)
    return {
        "model": a,
        "onnx": export_onnx(a, exporter="legacy"),
        "other": export_onnx(b, run / "export" / "other.onnx", exporter="legacy"),
    }


def test_parity_of_the_same_weights_passes(
    exports: dict[str, Path], tiny_market: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kdas.data.layouts import load_dataset

    main(["parity", str(exports["model"]), str(exports["onnx"]), "--data", str(tiny_market)])
    out = capsys.readouterr().out
    assert "max_abs_diff" in out and "pass" in out and "FAIL" not in out
    saved = json.loads((exports["onnx"].parent / "parity.json").read_text())
    report = saved["teacher.onnx"]
    splits = load_dataset(str(tiny_market), "market1501")
    assert report["num_query"] == len(splits.query)
    assert report["num_gallery"] == len(splits.gallery)
    assert report["passed"] and report["precision"] == "fp32"
    assert report["max_abs_diff"] <= 1e-4 and report["min_cosine"] > 0.9999
    assert report["top10_overlap"] == 1.0
    assert report["torch"]["mAP"] == pytest.approx(report["exported_metrics"]["mAP"], abs=1e-6)
    assert 0.0 < report["torch"]["mAP"] <= 1.0


def test_parity_of_another_model_fails(
    exports: dict[str, Path], tiny_market: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["parity", str(exports["model"]), str(exports["other"]), "--data",
              str(tiny_market), "--num-images", "6"])  # fmt: skip
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: parity failed")
    assert "same_weights" in err[0] and "max_abs_diff" in err[0]
    saved = json.loads((exports["other"].parent / "parity.json").read_text())
    # Both exports of this folder are kept, each under its own file name.
    assert {"teacher.onnx", "other.onnx"} <= set(saved)
    report = saved["other.onnx"]
    assert not report["passed"] and report["num_query"] == 6 and report["num_gallery"] == 6
    assert report["max_abs_diff"] > 0.01
    assert {c["name"]: c["passed"] for c in report["checks"]} == {
        "same_weights": False,
        "max_abs_diff": False,
    }


def test_parity_numbers_match_an_independent_computation(
    exports: dict[str, Path], tiny_market: Path, tmp_path: Path
) -> None:
    """max |diff| and min cosine recomputed here from both models' embeddings."""
    import torch

    from kdas.data.layouts import load_dataset
    from kdas.data.transforms import build_eval_transform
    from kdas.models import load
    from kdas.runtime.embedder import Embedder

    report = check_parity(
        exports["model"], exports["other"], tiny_market, num_images=5, out=tmp_path / "p.json"
    )
    assert json.loads((tmp_path / "p.json").read_text())["other.onnx"]["num_query"] == 5
    splits = load_dataset(str(tiny_market), "market1501")
    spread = [  # five of each, spread evenly over the identity-sorted split
        [split[i] for i in np.linspace(0, len(split) - 1, 5).round().astype(int)]
        for split in (splits.query, splits.gallery)
    ]
    records = spread[0] + spread[1]
    from PIL import Image

    transform = build_eval_transform((64, 32))
    x = torch.stack([transform(Image.open(r.path).convert("RGB")) for r in records])
    with torch.no_grad():
        ref = load(str(exports["model"])).model(x).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    other = Embedder(exports["other"], providers="cpu").embed_images([r.path for r in records])
    assert report["max_abs_diff"] == pytest.approx(np.abs(ref - other).max(), abs=1e-5)
    assert report["min_cosine"] == pytest.approx((ref * other).sum(1).min(), abs=1e-5)


def test_parity_input_errors(exports: dict[str, Path], tiny_market: Path, tmp_path: Path) -> None:
    with pytest.raises(KdasError, match="does not exist"):
        check_parity(exports["model"], tmp_path / "missing.onnx", tiny_market)
    with pytest.raises(KdasError, match="--num-images must be at least 1"):
        check_parity(exports["model"], exports["onnx"], tiny_market, num_images=0)
    with pytest.raises(KdasError, match="unknown data set layout"):
        check_parity(exports["model"], exports["onnx"], tiny_market, layout="nope")


def test_parity_without_a_matchable_query(exports: dict[str, Path], tiny_market: Path) -> None:
    """One query and one gallery image: no mAP, but fp32 is judged on the embeddings alone."""
    report = check_parity(exports["model"], exports["onnx"], tiny_market, num_images=1)
    assert report["torch"] is None and report["map_drop"] is None
    assert report["passed"] and report["num_query"] == 1
