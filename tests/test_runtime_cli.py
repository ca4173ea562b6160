"""`kdas index build/add/query/eval/info` end to end on the tiny data set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from kdas.cli.app import main
from kdas.runtime.index import GalleryIndex


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    from runtime_model import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:  # main() exits only on errors
        if exc.code:
            raise


def market_root(tiny_market: Path) -> Path:
    return next(p for p in tiny_market.iterdir() if p.is_dir())


def test_build_query_add_eval(tmp_path: Path, tiny_market: Path, model, capsys) -> None:
    from kdas.data.layouts import load_dataset

    splits = load_dataset(tiny_market, "market1501")
    out = tmp_path / "index"
    run(["index", "build", str(model[0]), str(tiny_market), "--out", str(out),
         "--layout", "market1501", "--type", "hnsw", "--m", "8"])  # fmt: skip
    index = GalleryIndex.open(out, expected_model=model[1])
    assert len(index) == len(splits.gallery) and index.index_type == "hnsw"
    assert index.params.m == 8 and (out / "model.onnx").is_file()
    assert f"indexed {len(splits.gallery)} images" in capsys.readouterr().out

    query = splits.query[0]
    picture = tmp_path / "hits.png"
    run(["index", "query", str(out), query.path, "--k", "3", "--picture", str(picture)])
    printed = capsys.readouterr().out
    assert Path(query.path).name[:7] in printed and "score" in printed
    with Image.open(picture) as image:
        assert image.width > 3 * 64 and image.height >= 128

    run(["index", "query", str(out), query.path, "--k", "3", "--exclude-same-camera"])
    capsys.readouterr()

    extra = tmp_path / "0777_c2_extra.jpg"
    shutil.copy(splits.gallery[0].path, extra)
    run(["index", "add", str(out), str(extra)])
    again = GalleryIndex.open(out)
    assert len(again) == len(splits.gallery) + 1
    new_record = again.get(int(again.records()[0][-1]))
    assert (new_record.pid, new_record.camid) == (777, 1)
    capsys.readouterr()

    # HNSW cannot drop vectors: removal leaves tombstones until compaction rebuilds the graph
    gone = [int(i) for i in again.records()[0][:2]]
    run(["index", "remove", str(out), *map(str, gone)])
    assert "removed 2 images" in capsys.readouterr().out
    removed = GalleryIndex.open(out)
    assert len(removed) == len(splits.gallery) - 1 and removed.stored_vectors == len(removed) + 2
    assert removed.get(gone[0]) is None and removed.get(gone[1]) is None
    run(["index", "compact", str(out)])
    assert f"{len(removed) + 2} -> {len(removed)} stored vectors" in capsys.readouterr().out
    assert GalleryIndex.open(out).stored_vectors == len(removed)
    with pytest.raises(SystemExit):
        main(["index", "remove", str(out), str(gone[0])])
    assert "no gallery image with id" in capsys.readouterr().err

    metrics_file = tmp_path / "metrics.json"
    flat = tmp_path / "flat"
    run(["index", "build", str(model[0]), str(tiny_market), "--out", str(flat),
         "--data-layout", "market1501"])  # fmt: skip
    run(["index", "eval", str(flat), "--data", str(tiny_market), "--layout", "market1501",
         "--out", str(metrics_file)])  # fmt: skip
    result = json.loads(metrics_file.read_text())
    assert "rank-1" in capsys.readouterr().out
    assert result["num_gallery"] == len(splits.gallery) and result["mode"].startswith("exact")
    assert 0.0 <= result["metrics"]["mAP"] <= 1.0

    run(["index", "info", str(flat)])
    assert json.loads(capsys.readouterr().out)["count"] == len(splits.gallery)


def test_build_from_a_folder_of_images(tmp_path: Path, tiny_market: Path, model) -> None:
    folder = market_root(tiny_market) / "bounding_box_test"
    out = tmp_path / "index"
    run(["index", "build", str(model[0]), str(folder), "--out", str(out), "--type", "ivf"])
    index = GalleryIndex.open(out)
    images = [p for p in folder.iterdir() if not p.name.startswith("-1")]
    assert len(index) == len(images)
    assert all(r.pid >= 0 for r in index.records()[1])


def test_cli_errors_are_one_line(tmp_path: Path, tiny_market: Path, model, capsys) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["index", "query", str(tmp_path / "missing"), "x.jpg"])
    assert excinfo.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not exist" in err and "\n" not in err
    loose = tmp_path / "person.jpg"
    loose.write_bytes(b"")
    index_dir = tmp_path / "i"
    run(["index", "build", str(model[0]), str(tiny_market), "--out", str(index_dir),
         "--layout", "market1501"])  # fmt: skip
    with pytest.raises(SystemExit):
        main(["index", "add", str(index_dir), str(loose)])
    assert "--pid and --camid" in capsys.readouterr().err
