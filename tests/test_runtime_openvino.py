"""The OpenVINO backend of the runtime: IR files checked on load, the embedder picked by file
type, index build/query/eval and the service over an IR, bad IRs refused in one line."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the [openvino] extra is not installed")

from kdas.cli.app import main
from kdas.errors import KdasError
from kdas.runtime.embedder import Embedder, resolve_backend
from kdas.runtime.index import GalleryIndex
from kdas.runtime.openvino_model import OpenVINOModel, read_ir, save_ir


def _ir_of(onnx_path: Path, info, out: Path) -> Path:
    import openvino as ov

    return save_ir(ov.convert_model(str(onnx_path)), out, info)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two tiny models that differ only in their weights, as ONNX and as IR."""
    from runtime_model import export_tiny_model

    root = tmp_path_factory.mktemp("ov")
    onnx_a, info_a = export_tiny_model(root / "a.onnx", seed=0)
    onnx_b, info_b = export_tiny_model(root / "b.onnx", seed=1)
    return {
        "onnx": onnx_a,
        "info": info_a,
        "ir": _ir_of(onnx_a, info_a, root / "a.xml"),
        "ir_b": _ir_of(onnx_b, info_b, root / "b.xml"),
    }


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def _fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_ir_embeddings_equal_onnx_runtime(models: dict) -> None:
    x = np.random.default_rng(0).random((5, 3, 32, 16), dtype=np.float32)
    onnx_embedder, ir_embedder = Embedder(models["onnx"]), Embedder(models["ir"])
    assert ir_embedder.backend == "openvino" and ir_embedder.info == models["info"]
    np.testing.assert_allclose(ir_embedder.embed_batch(x), onnx_embedder.embed_batch(x), atol=1e-5)


def test_backend_follows_the_file_type(models: dict) -> None:
    assert resolve_backend(models["ir"]) == "openvino"
    assert resolve_backend(models["onnx"], "onnxruntime") == "onnxruntime"
    with pytest.raises(KdasError, match="export an IR"):
        resolve_backend(models["onnx"], "openvino")
    with pytest.raises(KdasError, match="unknown backend"):
        resolve_backend(models["ir"], "coreml")


def test_bad_irs_are_refused(models: dict, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    shutil.copy(models["ir"], lonely)
    with pytest.raises(KdasError, match=r"no weights file lonely\.bin"):
        read_ir(lonely)
    swapped = tmp_path / "swapped.xml"
    shutil.copy(models["ir"], swapped)
    shutil.copy(models["ir_b"].with_suffix(".bin"), swapped.with_suffix(".bin"))
    assert (
        swapped.with_suffix(".bin").stat().st_size
        == models["ir"].with_suffix(".bin").stat().st_size
    )
    with pytest.raises(KdasError, match=r"does not belong to swapped\.xml"):
        read_ir(swapped)
    with pytest.raises(KdasError, match="does not exist"):
        read_ir(tmp_path / "missing.xml")


def test_ir_without_kdas_metadata_is_refused(models: dict, tmp_path: Path) -> None:
    import openvino as ov

    plain = tmp_path / "plain.xml"
    ov.save_model(ov.convert_model(str(models["onnx"])), str(plain))
    with pytest.raises(KdasError, match="no kdas metadata"):
        read_ir(plain)


def test_unknown_device_is_one_line(models: dict) -> None:
    with pytest.raises(KdasError, match="unknown OpenVINO device 'TPU'"):
        OpenVINOModel(models["ir"], device="TPU")


def test_index_over_an_ir(
    models: dict, tiny_market: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "index"
    main(["index", "build", str(models["ir"]), str(tiny_market), "--out", str(out),
          "--layout", "market1501", "--ov-device", "CPU"])  # fmt: skip
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    index = GalleryIndex.open(out, expected_model=models["info"])
    assert len(index) > 0
    capsys.readouterr()
    main(["index", "eval", str(out), "--data", str(tiny_market), "--backend", "openvino"])
    assert "mAP" in capsys.readouterr().out

    # the same weights exported to ONNX answer the same queries as the IR the index holds
    onnx_index = tmp_path / "onnx-index"
    main(["index", "build", str(models["onnx"]), str(tiny_market), "--out", str(onnx_index),
          "--layout", "market1501"])  # fmt: skip
    a = GalleryIndex.open(out).embeddings()[1]
    b = GalleryIndex.open(onnx_index).embeddings()[1]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_index_commands_refuse_bad_ir_input(
    models: dict, tiny_market: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    lonely = folder / "lonely.xml"
    shutil.copy(models["ir"], lonely)
    before = _digests(folder)
    err = _fails_in_one_line(
        [
            "index",
            "build",
            str(lonely),
            str(tiny_market),
            "--out",
            str(tmp_path / "i"),
            "--layout",
            "market1501",
        ],
        capsys,
    )
    assert "lonely.bin" in err and not (tmp_path / "i").exists()
    err = _fails_in_one_line(
        [
            "index",
            "build",
            str(models["ir"]),
            str(tiny_market),
            "--out",
            str(tmp_path / "j"),
            "--layout",
            "market1501",
            "--ov-device",
            "QPU",
        ],
        capsys,
    )
    assert "QPU" in err and not (tmp_path / "j").exists()
    assert _digests(folder) == before


def test_service_over_an_ir(models: dict, tiny_market: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from kdas.data.layouts import load_dataset
    from kdas.runtime.embedder import EmbedderChoice
    from kdas.runtime.pipeline import build_index
    from kdas.runtime.service import create_app, load_service

    splits = load_dataset(tiny_market, "market1501")
    out = tmp_path / "index"
    build_index(models["onnx"], splits.gallery, out)
    service = load_service(out, model_path=models["ir"], choice=EmbedderChoice(device="CPU"))
    assert service.embedder.backend == "openvino"
    client = TestClient(create_app(service))
    with open(splits.query[0].path, "rb") as handle:
        files = [("images", ("q.jpg", handle.read(), "image/jpeg"))]
    response = client.post("/v1/search", files=files, data={"k": "3"})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["hits"]) == 3
