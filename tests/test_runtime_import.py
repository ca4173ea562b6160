"""The runtime ships to machines without torch: importing and using it must never need torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        # a meta-path finder that makes `import torch` (and torchvision) fail like on an edge box
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"torch is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def run_without_torch(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "no_torch.py"
    script.write_text(BLOCK_TORCH + textwrap.dedent(code), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )


def test_blocker_really_blocks_torch(tmp_path: Path) -> None:
    result = run_without_torch("import torch\n", tmp_path)
    assert result.returncode != 0
    assert "torch is blocked" in result.stderr


def test_runtime_modules_import_without_torch(tmp_path: Path) -> None:
    code = """
    import importlib
    import kdas
    import kdas.runtime
    names = ["session", "preprocess", "embedder", "tensorrt_engine", "faiss_backend",
             "manifest", "metadata", "index", "pipeline", "picture", "service", "model_meta"]
    for name in names:
        importlib.import_module("kdas.runtime." + name)
    from kdas.runtime import Embedder, GalleryIndex, create_session  # lazy exports resolve
    import kdas.evaluation.metrics  # the numpy evaluation the runtime uses
    assert "torch" not in sys.modules, "torch was imported"
    print("ok")
    """
    result = run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_runtime_works_end_to_end_without_torch(tmp_path: Path, tiny_model) -> None:
    """Embed, index, search, save, reopen and serve (app creation) with torch unavailable."""
    model_path, _ = tiny_model
    code = f"""
    import numpy as np
    from PIL import Image
    from kdas.runtime.embedder import Embedder
    from kdas.runtime.index import GalleryIndex
    from kdas.runtime.service import create_app, load_service

    embedder = Embedder({str(model_path)!r})
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)) for _ in range(6)]
    x = embedder.embed_images(images, batch_size=4)
    records = [(f"g{{i}}.png", i // 2, i % 2) for i in range(6)]
    index = GalleryIndex.build(x, records, embedder.info, model_path={str(model_path)!r})
    index.save({str(tmp_path / "index")!r})
    again = GalleryIndex.open({str(tmp_path / "index")!r}, expected_model=embedder.info)
    hits = again.search(x[:1], 3)[0]
    assert hits[0].id == 1 and abs(hits[0].score - 1.0) < 1e-5, hits
    create_app(load_service({str(tmp_path / "index")!r}))
    assert "torch" not in sys.modules
    print("ok")
    """
    result = run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    from runtime_model import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
