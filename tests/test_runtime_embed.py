"""Session helper, torch-free preprocessing and the Embedder, checked against torch."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdas.errors import BackendUnavailable, KdasError
from kdas.images import read_image
from kdas.runtime.embedder import Embedder
from kdas.runtime.preprocess import preprocess_batch, preprocess_image
from kdas.runtime.session import create_session, read_model_info, resolve_providers
from kdas.runtime.tensorrt_engine import read_engine_info


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    from runtime_model import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def market_images(root: Path, limit: int = 12) -> list[Path]:
    from kdas.data.layouts import load_dataset

    splits = load_dataset(root, "market1501")
    half = (limit + 1) // 2
    files = [Path(r.path) for r in splits.gallery[:half] + splits.query[: limit - half]]
    assert len(files) == limit
    return files


def odd_images() -> list[Image.Image]:
    """Other sizes and modes than the data set's: up/down-scaling, grey, palette, alpha."""
    rng = np.random.default_rng(1)
    rgb = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for h, w in ((7, 3), (300, 120), (33, 17), (256, 128))
    ]
    grey = Image.fromarray(rng.integers(0, 256, (50, 20), dtype=np.uint8), mode="L")
    rgba = Image.fromarray(rng.integers(0, 256, (40, 30, 4), dtype=np.uint8), mode="RGBA")
    return [*rgb, grey, grey.convert("P"), rgba]


# --- preprocessing -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(32, 16), (256, 128), (64, 32)])
def test_preprocess_matches_torch_eval_transform(tiny_market: Path, tiny_model, size) -> None:
    from kdas.data.transforms import build_eval_transform

    _, info = tiny_model
    info = replace(info, input_height=size[0], input_width=size[1])
    transform = build_eval_transform(size)
    images = [Image.open(p) for p in market_images(tiny_market)] + odd_images()
    for image in images:
        expected = transform(image).numpy()
        got = preprocess_image(read_image(image), info)
        assert got.dtype == np.float32 and got.shape == (3, *size)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_preprocess_batch_reads_paths_bytes_and_images(tiny_market: Path, tiny_model) -> None:
    _, info = tiny_model
    path = market_images(tiny_market, 1)[0]
    batch = preprocess_batch([path, path.read_bytes(), Image.open(path)], info)
    assert batch.shape == (3, 3, info.input_height, info.input_width)
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], batch[2])


def test_bad_images_name_the_input(tmp_path: Path, tiny_market: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(market_images(tiny_market, 1)[0].read_bytes()[:200])
    for source, needle in [
        (text, "notes.jpg"),
        (truncated, "cut.jpg"),
        (tmp_path / "missing.png", "missing.png"),
    ]:
        with pytest.raises(KdasError, match=needle):
            read_image(source)
    with pytest.raises(KdasError, match="not a readable image"):
        read_image(b"\x89PNG garbage", name="upload 'x.png'")
    with pytest.raises(KdasError, match="empty"):
        read_image(b"")


# --- sessions ------------------------------------------------------------------------------------
def test_session_options_and_metadata(tiny_model) -> None:
    path, info = tiny_model
    session = create_session(path, providers="cpu", intra_op_threads=1, graph_optimization="basic")
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert read_model_info(path) == info
    assert read_model_info(session=session) == info
    assert "CPUExecutionProvider" in resolve_providers("auto")


def test_session_errors(tmp_path: Path, tiny_model) -> None:
    with pytest.raises(KdasError, match=r"nope\.onnx does not exist"):
        create_session(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(KdasError, match=r"cannot load ONNX model .*corrupt\.onnx"):
        create_session(corrupt)
    with pytest.raises(KdasError, match="graph_optimization"):
        create_session(tiny_model[0], graph_optimization="max")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider") as excinfo:
        create_session(tiny_model[0], providers=["CUDAExecutionProvider"])
    assert excinfo.value.exit_code == 2


def test_missing_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tiny_model) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"kdas\[cpu\]") as excinfo:
        create_session(tiny_model[0])
    assert "\n" not in str(excinfo.value)


def test_model_without_metadata_is_refused(tmp_path: Path, tiny_model) -> None:
    import onnx

    model = onnx.load(str(tiny_model[0]))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(KdasError, match="no kdas metadata"):
        read_model_info(bare)


# --- embedder ------------------------------------------------------------------------------------
def test_embedder_matches_torch_model(tiny_market: Path, tiny_model) -> None:
    import torch
    from runtime_model import tiny_net

    from kdas.data.transforms import build_eval_transform

    path, info = tiny_model
    files = market_images(tiny_market, 10)
    transform = build_eval_transform((info.input_height, info.input_width))
    with torch.no_grad():
        expected = tiny_net()(torch.stack([transform(Image.open(p)) for p in files])).numpy()

    embedder = Embedder(path, providers="cpu")
    seen: list[tuple[int, int]] = []
    got = embedder.embed_images(files, batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert got.shape == (len(files), info.embedding_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]
    as_bytes = embedder.embed_images([p.read_bytes() for p in files], batch_size=32)
    np.testing.assert_allclose(as_bytes, got, atol=1e-6)
    assert embedder.embed_images([]).shape == (0, info.embedding_dim)


def test_embedder_reports_the_bad_image(tmp_path: Path, tiny_market: Path, tiny_model) -> None:
    bad = tmp_path / "0001_c1_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    good = market_images(tiny_market, 2)
    with pytest.raises(KdasError, match=r"0001_c1_broken\.jpg"):
        Embedder(tiny_model[0]).embed_images([*good, bad], batch_size=2)
    with pytest.raises(KdasError, match="batch_size"):
        Embedder(tiny_model[0]).embed_images(good, batch_size=0)


def test_engine_files_need_sidecar_and_tensorrt(tmp_path: Path, tiny_model) -> None:
    _, info = tiny_model
    engine = tmp_path / "student.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(KdasError, match="no metadata sidecar"):
        Embedder(engine)
    # both sidecar spellings: metadata_props keys, or plain field names
    Path(f"{engine}.json").write_text(json.dumps(info.to_metadata_props()))
    assert read_engine_info(engine) == info
    plain = {k: v for k, v in info.__dict__.items()}
    Path(f"{engine}.json").write_text(json.dumps(plain))
    assert read_engine_info(engine) == info
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="TensorRT is not installed") as excinfo:
            Embedder(engine)
        assert "\n" not in str(excinfo.value)
    else:  # a real TensorRT refuses the fake engine
        with pytest.raises(KdasError):
            Embedder(engine)


def test_preprocess_from_bytes_roundtrip(tiny_model) -> None:
    _, info = tiny_model
    image = Image.fromarray(np.full((64, 32, 3), 128, np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    got = preprocess_image(read_image(buffer.getvalue()), info)
    expected = (128 / 255 - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(got[:, 0, 0], expected, atol=1e-6)
