"""What a latency measurement depends on besides the model: the device and the runtime's version.

A latency table is only true on the machine kind it was measured on, so it carries this
fingerprint and a search compares it with the machine it runs on. Standard library only (the
CPU from /proc/cpuinfo, package versions from their installed metadata, the GPU from
`nvidia-smi`), so reading a fingerprint never imports a runtime.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

# The CPU features that decide which kernels oneDNN, ONNX Runtime and OpenVINO pick: vector
# width, VNNI (INT8 dot products), bf16 and the AMX matrix units.
MATRIX_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

# Distribution names a runtime may be installed under (CPU and GPU builds).
_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_cu12", "tensorrt_cu13"),
}


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model as /proc/cpuinfo names it (else what `platform` knows)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_matrix_flags() -> tuple[str, ...]:
    """The `MATRIX_FLAGS` this CPU has, in that order."""
    flags = set(_cpuinfo().get("flags", "").split())
    return tuple(flag for flag in MATRIX_FLAGS if flag in flags)


@lru_cache(maxsize=1)
def gpu_name() -> str | None:
    """The first CUDA GPU's name, or None where there is none (or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return names[0] if done.returncode == 0 and names else None


def package_version(runtime: str) -> str | None:
    """The installed version of a runtime ("onnxruntime", "openvino", "tensorrt"), or None."""
    for name in _DISTRIBUTIONS.get(runtime, (runtime,)):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
