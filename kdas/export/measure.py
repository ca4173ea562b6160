"""Measurements for `kdas bench`: latency percentiles, the machine's matmul peak, peak memory,
and ONNX Runtime's per-operator profile."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class Timing:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int, max_seconds: float) -> Timing:
    """Call `fn` `warmup` times untimed, then up to `repeats` times timed (stopping early once
    `max_seconds` have passed, after at least 3 timed calls)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    ms = np.array(times) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Timing(float(p50), float(p90), float(p99), float(ms.mean()), len(times))


def matmul_peak_gflops(threads: int | None = None, n: int = 2048, dtype: str = "float32") -> float:
    """Best of a few n^3 torch matmuls in GFLOP/s (2 n^3 FLOPs each): the arithmetic ceiling
    that a model's FLOP floor is measured against."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        kind = getattr(torch, dtype)
        a = torch.randn(n, n).to(kind)
        b = torch.randn(n, n).to(kind)
        for _ in range(2):
            a @ b
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / best / 1e9


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so the next RSS baseline is
    not inflated by what the previous backend left in malloc's free lists."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else None


def ort_op_profile(
    model_path: str | Path, batch: np.ndarray, runs: int = 10, threads: int | None = None
) -> dict[str, Any]:
    """Per-op-type time of an ONNX model under ONNX Runtime's profiler.

    Returns {"ms_per_run": total kernel ms per run, "ops": [{op, ms_per_run, share, nodes}]}
    sorted by time; kernel time only (no session overhead), after one untimed run.
    """
    from kdas.runtime.session import create_session, read_model_info

    info = read_model_info(model_path)
    with tempfile.TemporaryDirectory(prefix="kdas-profile-") as tmp:
        session = create_session(
            model_path,
            providers="cpu",
            intra_op_threads=threads,
            enable_profiling=True,
            profile_prefix=str(Path(tmp) / "ort"),
        )
        feed = {info.input_name: batch}
        session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    first_timed = run_starts[1] if len(run_starts) > 1 else 0
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if event["ts"] < first_timed:
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op[op] += event["dur"] / 1e3
        nodes[op].add(event["name"])
    total = sum(per_op.values()) or 1.0
    ops = [
        {
            "op": op,
            "ms_per_run": ms / runs,
            "share": ms / total,
            "nodes": len(nodes[op]),
        }
        for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])
    ]
    return {"ms_per_run": total / runs, "runs": runs, "batch": len(batch), "ops": ops}
