"""TensorRT cannot run on this machine: its absence must be one line and exit code 2.

The engine builder itself (kdas/export/tensorrt_build.py) needs a CUDA GPU and is not tested
here; docs/deployment.md says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from export_models import save_teacher

from kdas.cli.app import main
from kdas.errors import BackendUnavailable

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)


def test_tensorrt_absence_is_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    teacher = save_teacher(tmp_path / "teacher")
    for precision in ("fp32", "fp16", "int8"):
        with pytest.raises(SystemExit) as exit_info:
            main(["export", str(teacher), "--to", "tensorrt", "--precision", precision,
                  "--calib-data", str(tmp_path)])  # fmt: skip
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "TensorRT" in err[0]
    assert not (tmp_path / "export").exists()  # it stopped before exporting anything


def test_build_engine_raises_backend_unavailable(tmp_path: Path) -> None:
    from kdas.export.tensorrt_build import build_engine

    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", "fp16")
