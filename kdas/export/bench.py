"""`kdas bench`: student and teacher side by side on every backend, against the FLOP floor.

For each model and backend: parameters, FLOPs, latency p50/p90/p99 after warm-up, throughput,
peak memory, and the model's FLOP floor (FLOPs / the fp32 matmul peak measured at the start of
the run), so a reader sees how close each backend gets to the arithmetic limit of this machine.

Student and teacher are compared twice: on every backend, and each on its own fastest measured
backend per batch size (the "best" section), because a deployment picks the backend that suits
the model: judging the teacher only on ONNX Runtime would make it look slower than it is.

Peak memory is the rise of the process's peak RSS (Linux VmHWM) over the RSS before the
backend's runner was created: the runner's own copy of the weights, its session arenas and the
activations of the batch. The peak mark is reset through /proc/self/clear_refs before each
batch, so no tracing allocator slows the timed calls.
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kdas import __version__
from kdas.constants import DEFAULT_LAYOUT
from kdas.errors import BackendUnavailable, KdasError
from kdas.export import measure
from kdas.export.backends import BACKEND_NOTES, BACKENDS, OPENVINO_BACKENDS, make_runner
from kdas.files import BENCH_FILE, BENCH_PLOT, BENCH_TABLE, EXPORT_DIR
from kdas.utils.atomic import atomic_write_json
from kdas.utils.machine import cpu_model
from kdas.utils.outputs import check_out_dir

MODEL_ROLES = ("student", "teacher")


@dataclass
class BenchConfig:
    """How `kdas bench` measures: the one home of the bench defaults (the CLI passes only what
    the user set; the pipeline's bench stage overrides a few for a short demo)."""

    backends: tuple[str, ...] = BACKENDS
    batches: tuple[int, ...] = (1, 8, 32)
    size: tuple[int, int] | None = None  # (H, W); None: the student's (else teacher's) size
    repeats: int = 20
    warmup: int = 3
    max_seconds: float = 30.0  # per (model, backend, batch): stop early after 3 timed runs
    threads: int | None = None  # torch threads and ORT intra-op threads; None: their defaults
    calib_data: str | None = None  # INT8 calibration data set; None: a small synthetic one
    calib_layout: str = DEFAULT_LAYOUT
    calib_images: int = 64
    exporter: str = "auto"
    profile_batch: int | None = None  # ORT per-op profile of the onnx backends at this batch
    seed: int = 0
    latency_table: str | None = None  # compare the student's predicted latency with the bench
    allow_foreign_lut: bool = False

    def validate(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise KdasError(f"unknown backend(s) {unknown}: choose from {', '.join(BACKENDS)}")
        if not self.backends:
            raise KdasError("no backends to benchmark")
        if not self.batches or any(b < 1 for b in self.batches):
            raise KdasError(f"batch sizes must be positive integers, got {self.batches}")
        if self.repeats < 1 or self.warmup < 0:
            raise KdasError("repeats must be >= 1 and warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise KdasError(f"threads must be >= 1, got {self.threads}")


def _openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def _machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": _openvino_version(),
        "kdas": __version__,
    }


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _model_facts(model_dir: str | os.PathLike[str], size: tuple[int, int]) -> dict[str, Any]:
    from kdas.models import load as load_model
    from kdas.models.facts import count_flops, count_parameters

    loaded = load_model(str(model_dir))
    total = count_parameters(loaded.model)["total"]
    classifier = loaded.model.head.classifier.weight.numel()
    return {
        "dir": str(model_dir),
        "kind": loaded.spec.kind,
        "trained_size": list(loaded.spec.input_size),
        "parameters": total - classifier,  # what the exported graph holds: no classifier
        "parameters_with_classifier": total,
        "flops": count_flops(loaded.model, size),
        "embedding_dim": loaded.model.embedding_dim,
        "weights_sha256": loaded.weights_sha256,
    }


def _calibration(cfg: BenchConfig, work: Path, size: tuple[int, int]) -> tuple[list[str], str]:
    """Calibration images: the given data set's training split, else a small synthetic one
    (latency does not depend on the calibration; accuracy is parity's job)."""
    from kdas.export.calibration import calibration_paths

    if cfg.calib_data:
        paths = calibration_paths(cfg.calib_data, cfg.calib_layout, cfg.calib_images)
        return paths, f"{cfg.calib_layout} data set {cfg.calib_data}"
    from kdas.data.synthetic import SynthConfig, synthesize

    synth = SynthConfig(ids=8, cameras=2, images_per_camera=4, size=size, seed=cfg.seed)
    root = synthesize(work / "calibration-data", synth)
    paths = calibration_paths(root, synth.layout, cfg.calib_images)
    return paths, f"synthetic ({len(paths)} images, kdas.data.synthetic)"


def _export_onnx_files(
    role: str,
    model_dir: str,
    cfg: BenchConfig,
    size: tuple[int, int],
    work: Path,
    calib: Any,
    given: dict[str, Path] | None = None,
) -> dict[str, Path]:
    """The ONNX files of one model: those `given` (already exported at `size`), the rest
    exported now into the temp folder."""
    from kdas.export.onnx_export import export_onnx

    files: dict[str, Path] = {k: Path(v) for k, v in (given or {}).items()}
    needs_onnx = {"onnx", "onnx-int8", "tensorrt", *OPENVINO_BACKENDS} - set(files)
    if not needs_onnx & set(cfg.backends) or (
        "onnx" in files and ("onnx-int8" in files or "onnx-int8" not in cfg.backends)
    ):
        return files
    if "onnx" not in files:
        files["onnx"] = export_onnx(
            model_dir, work / f"{role}.onnx", exporter=cfg.exporter, input_size=size
        )
    if "onnx-int8" in cfg.backends and "onnx-int8" not in files:
        from kdas.export.quantize import quantize_int8

        paths = calib()
        files["onnx-int8"] = quantize_int8(files["onnx"], work / f"{role}.int8.onnx", paths)
    return files


def _export_ir(role: str, backend: str, files: dict[str, Path], work: Path, calib: Any) -> None:
    """The IR an OpenVINO backend runs, converted from the fp32 ONNX export (INT8: kdas's QDQ on the
    onnx-int8 calibration images); BackendUnavailable without OpenVINO or CPU bf16."""
    if backend not in OPENVINO_BACKENDS or backend in files:
        return
    from kdas.export.openvino_export import export_openvino

    precision = OPENVINO_BACKENDS[backend]
    files[backend] = export_openvino(
        files["onnx"],
        work / f"{role}.{backend}.xml",
        precision,
        calibration_paths=calib() if precision == "int8" else None,
    )


def _time_backend(
    role: str,
    backend: str,
    model_dir: str,
    facts: dict[str, Any],
    files: dict[str, Path],
    cfg: BenchConfig,
    size: tuple[int, int],
    peak_gflops: float,
    work: Path,
    calib: Any,
    advance: Any,
) -> list[dict[str, Any]]:
    base_row = {"model": role, "backend": backend}
    try:
        _export_ir(role, backend, files, work, calib)
        measure.release_memory()
        base_rss = measure.rss_mb()
        runner = make_runner(backend, model_dir, files, work, cfg.threads)
    except BackendUnavailable as exc:
        advance(len(cfg.batches))
        reason = str(exc)
        return [{**base_row, "batch": b, "status": "absent", "reason": reason} for b in cfg.batches]
    rows = []
    rng = np.random.default_rng(cfg.seed)
    for batch in cfg.batches:
        x = rng.standard_normal((batch, 3, *size), dtype=np.float32)
        tracked = measure.reset_peak_rss()
        timing = measure.time_calls(lambda x=x: runner(x), cfg.warmup, cfg.repeats, cfg.max_seconds)
        peak = measure.peak_rss_mb() if tracked else None
        floor_ms = batch * facts["flops"] / (peak_gflops * 1e9) * 1e3
        rows.append(
            {
                **base_row,
                "batch": batch,
                "status": "ok",
                **asdict(timing),
                "images_per_s": batch / (timing.mean_ms / 1e3),
                "ms_per_image": timing.p50_ms / batch,
                "floor_ms": floor_ms,
                "x_floor": timing.p50_ms / floor_ms,
                "peak_mb": (peak - base_rss) if peak is not None and base_rss else None,
            }
        )
        advance(1)
    return rows  # the runner goes with this frame; the next backend's baseline frees it


def _ratios(rows: list[dict[str, Any]], facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Student / teacher: size ratios, and per backend and batch the latency and throughput."""
    if not all(role in facts for role in MODEL_ROLES):
        return {}
    s, t = facts["student"], facts["teacher"]
    ok = {(r["model"], r["backend"], r["batch"]): r for r in rows if r["status"] == "ok"}
    per_backend = []
    for (role, backend, batch), row in ok.items():
        other = ok.get(("teacher", backend, batch))
        if role != "student" or other is None:
            continue
        per_backend.append(
            {
                "backend": backend,
                "batch": batch,
                "latency": row["p50_ms"] / other["p50_ms"],
                "throughput": row["images_per_s"] / other["images_per_s"],
            }
        )
    return {
        "parameters": s["parameters"] / t["parameters"],
        "flops": s["flops"] / t["flops"],
        "per_backend": per_backend,
    }


def _best(rows: list[dict[str, Any]], batches: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per batch size, each model's fastest backend (lowest p50) and, with both models, the
    student / teacher ratios of those two measurements."""
    best = []
    for batch in batches:
        entry: dict[str, Any] = {"batch": batch}
        for role in MODEL_ROLES:
            mine = [
                r for r in rows if r["status"] == "ok" and (r["model"], r["batch"]) == (role, batch)
            ]
            if mine:
                top = min(mine, key=lambda r: r["p50_ms"])
                entry[role] = {
                    k: top[k] for k in ("backend", "p50_ms", "ms_per_image", "images_per_s")
                }
        if all(role in entry for role in MODEL_ROLES):
            s, t = entry["student"], entry["teacher"]
            entry["latency"] = s["p50_ms"] / t["p50_ms"]
            entry["throughput"] = s["images_per_s"] / t["images_per_s"]
        if len(entry) > 1:
            best.append(entry)
    return best


def _prediction(
    cfg: BenchConfig, models: dict[str, str], rows: list[dict[str, Any]]
) -> dict[str, Any] | None:
    if not cfg.latency_table or "student" not in models:
        return None
    from kdas.export.latency_check import predicted_vs_measured

    return predicted_vs_measured(
        cfg.latency_table, models["student"], rows, allow_foreign=cfg.allow_foreign_lut
    )


def run_bench(
    student: str | os.PathLike[str] | None = None,
    teacher: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    config: BenchConfig | None = None,
    progress: bool = True,
    exported: dict[str, dict[str, Path]] | None = None,
) -> dict[str, Any]:
    """Benchmark the given model folders; writes bench.json, bench.md and bench.png to `out`
    and returns the bench.json content.

    `exported` optionally maps "student"/"teacher" to already exported files, keyed by backend
    ({"onnx": path, "onnx-int8": path, "openvino-int8": ir.xml...}), made at the benchmark's
    input size; the OpenVINO IRs not given are converted from the fp32 ONNX.
    """
    import torch

    from kdas.export.report import write_markdown, write_plot
    from kdas.progress import make_progress

    cfg = config or BenchConfig()
    cfg.validate()
    models = {r: str(p) for r, p in (("student", student), ("teacher", teacher)) if p}
    if not models:
        raise KdasError("give at least one model folder: --student and/or --teacher")
    # default: the run's export folder, beside the exported files (runs/NAME/export)
    out = Path(out) if out else Path(next(iter(models.values()))).resolve().parent / EXPORT_DIR
    check_out_dir(out)
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        from kdas.models.artifacts import read_artifact_config

        first = read_artifact_config(next(iter(models.values())))["model"]
        size = tuple(cfg.size) if cfg.size else tuple(first["input_size"])
        load_before = _load_average()
        peak = measure.matmul_peak_gflops(cfg.threads)
        peak_bf16 = measure.matmul_peak_gflops(cfg.threads, dtype="bfloat16")
        facts = {role: _model_facts(path, size) for role, path in models.items()}
        rows: list[dict[str, Any]] = []
        profiles: dict[str, Any] = {}
        calibration: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="kdas-bench-") as tmp:
            work = Path(tmp)

            def calib() -> list[str]:
                if "paths" not in calibration:
                    calibration["paths"], calibration["source"] = _calibration(cfg, work, size)
                return calibration["paths"]

            total = len(models) * len(cfg.backends) * len(cfg.batches)
            with make_progress(progress) as bar:
                task = bar.add_task("benchmarking", total=total)
                for role, model_dir in models.items():
                    bar.update(task, description=f"exporting {role}")
                    files = _export_onnx_files(
                        role, model_dir, cfg, size, work, calib, (exported or {}).get(role)
                    )
                    for backend in cfg.backends:
                        bar.update(task, description=f"{role} {backend}")
                        rows += _time_backend(
                            role, backend, model_dir, facts[role], files, cfg, size, peak,
                            work, calib, lambda n: bar.advance(task, n),
                        )  # fmt: skip
                    if cfg.profile_batch:
                        x = np.random.default_rng(cfg.seed).standard_normal(
                            (cfg.profile_batch, 3, *size), dtype=np.float32
                        )
                        for backend in ("onnx", "onnx-int8"):
                            if backend in files and backend in cfg.backends:
                                profiles[f"{role}/{backend}"] = measure.ort_op_profile(
                                    files[backend], x, threads=cfg.threads
                                )
    finally:
        torch.set_num_threads(previous_threads)
    absent = {
        r["backend"]: r["reason"] for r in rows if r["status"] == "absent"
    }  # one reason per backend
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "load_average": {"before": load_before, "after": _load_average()},
        "threads": {
            "torch": cfg.threads or previous_threads,
            "onnxruntime": cfg.threads or 0,
            "openvino": cfg.threads or 0,
        },
        "size": list(size),
        "peak_gflops": {"fp32": peak, "bf16": peak_bf16},
        "config": asdict(cfg),
        "backends": {b: BACKEND_NOTES[b] for b in cfg.backends},
        "models": facts,
        "calibration": calibration.get("source"),
        "results": rows,
        "absent": absent,
        "ratios": _ratios(rows, facts),
        "best": _best(rows, cfg.batches),
        "profiles": profiles,
        "latency_prediction": _prediction(cfg, models, rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / BENCH_FILE, result)
    write_markdown(result, out / BENCH_TABLE)
    write_plot(result, out / BENCH_PLOT)
    result["written_to"] = str(out)
    return result
