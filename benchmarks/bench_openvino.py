"""OpenVINO vs ONNX Runtime on the CPU: the Re-ID teacher and two KDAS students, fp32/bf16/INT8.

    .venv/bin/python benchmarks/bench_openvino.py            # full: batch 1, 8, 32 (run it idle)
    .venv/bin/python benchmarks/bench_openvino.py --quick    # batch 1, 8, fewer repeats
    .venv/bin/python benchmarks/bench_openvino.py --quick --models darts   # one model only

Models (bench_deploy.py's, untrained weights with BatchNorm adapted to synthetic images, 256x128):
the ResNet-50 teacher with last stride 1, and the students at C=64 with the DARTS-V2 cell and the
part-aware cell. Each is exported once (kdas's fp32 ONNX and its QDQ INT8 ONNX, calibrated on the
synthetic training split) and run as six variants, all in one process, `--threads` threads each:

| variant | what runs |
| --- | --- |
| ort-fp32 | ONNX Runtime CPU, the fp32 ONNX |
| ort-int8 | ONNX Runtime CPU, the QDQ INT8 ONNX |
| ov-fp32 | OpenVINO CPU, IR converted from the fp32 ONNX, INFERENCE_PRECISION_HINT f32 |
| ov-bf16 | the same IR run with INFERENCE_PRECISION_HINT bf16 (absent without CPU bf16) |
| ov-int8-nncf | NNCF post-training INT8 of the fp32 IR, the same calibration images |
| ov-int8-qdq | OpenVINO reading kdas's QDQ INT8 ONNX |

For each: p50 latency per image at each batch size (random input, after warm-up), the speed-up
over ONNX Runtime of the same precision (bf16 against ORT fp32, which has no bf16 CPU path),
the largest |difference| of L2-normalised embeddings from PyTorch fp32, and the mAP on the
synthetic query/gallery split against PyTorch fp32's. Goals checked at the end (issue 14): the
fp32 IR within max |diff| <= 1e-4, each INT8 IR losing <= 1 mAP point (0.01).
Writes OUT/bench_openvino.json (default benchmarks/results) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_deploy import make_models, synthetic_data, train_images  # noqa: E402

from kdas import __version__  # noqa: E402
from kdas.errors import BackendUnavailable  # noqa: E402
from kdas.export import measure  # noqa: E402
from kdas.export.backends import make_runner  # noqa: E402
from kdas.export.calibration import calibration_paths  # noqa: E402
from kdas.export.onnx_export import export_onnx  # noqa: E402
from kdas.export.openvino_export import export_openvino  # noqa: E402
from kdas.export.quantize import quantize_int8  # noqa: E402
from kdas.utils.atomic import atomic_write_json  # noqa: E402
from kdas.utils.machine import cpu_model  # noqa: E402

SIZE = (256, 128)
C = 64
MODELS = ("teacher", "darts", "part")
# variant -> (the kdas bench backend whose runner times it, its precision)
VARIANTS = {
    "ort-fp32": ("onnx", "fp32"),
    "ort-int8": ("onnx-int8", "int8"),
    "ov-fp32": ("openvino-fp32", "fp32"),
    "ov-bf16": ("openvino-bf16", "bf16"),
    "ov-int8-nncf": ("openvino-int8", "int8"),
    "ov-int8-qdq": ("openvino-int8", "int8"),
}
BASELINE = {"fp32": "ort-fp32", "bf16": "ort-fp32", "int8": "ort-int8"}  # speed-up over this
FP32_MAX_DIFF = 1e-4
INT8_MAX_MAP_DROP = 0.01


@dataclass
class Settings:
    """One run's measurement settings (full by default; --quick shortens them)."""

    batches: tuple[int, ...] = (1, 8, 32)
    repeats: int = 30
    warmup: int = 3
    max_seconds: float = 20.0
    threads: int = 2
    calib_images: int = 240  # every training image of the synthetic set
    eval_batch: int = 32


def settings(args: argparse.Namespace) -> Settings:
    s = (
        Settings(batches=(1, 8), repeats=10, max_seconds=5.0, calib_images=64)
        if args.quick
        else Settings()
    )
    for name in ("repeats", "threads", "calib_images", "max_seconds"):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    return s


def machine(threads: int) -> dict[str, Any]:
    """CPU model and flags (lscpu where it exists), library versions, threads."""
    import nncf
    import onnxruntime
    import openvino

    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("Flags", "").split())
    info["lscpu_model"] = fields.get("Model name")
    info["bf16_flags"] = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"})
    info["vnni_flags"] = sorted(flags & {"avx512_vnni", "avx_vnni"})
    info["openvino_cpu_capabilities"] = list(
        openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    )
    info.update(
        openvino=openvino.__version__, onnxruntime=onnxruntime.__version__,
        nncf=nncf.__version__, torch=torch.__version__, kdas=__version__, threads=threads,
    )  # fmt: skip
    return info


def export_variants(
    name: str, model_dir: Path, work: Path, calib: list[str]
) -> tuple[dict[str, Path], dict[str, str], dict[str, float]]:
    """Every variant's file (a missing capability: its one-line reason) and its export time."""
    files: dict[str, Path] = {}
    absent: dict[str, str] = {}
    seconds: dict[str, float] = {}

    def timed(variant: str, make: Any) -> None:
        t0 = time.perf_counter()
        try:
            files[variant] = make()
        except BackendUnavailable as exc:
            absent[variant] = str(exc)
        seconds[variant] = time.perf_counter() - t0

    fp32 = work / f"{name}.onnx"
    timed("ort-fp32", lambda: export_onnx(model_dir, fp32, input_size=SIZE))
    timed("ort-int8", lambda: quantize_int8(fp32, work / f"{name}.int8.onnx", calib))
    for variant, precision in (("ov-fp32", "fp32"), ("ov-bf16", "bf16")):
        timed(variant, lambda p=precision: export_openvino(fp32, work / f"{name}.{p}.xml", p))
    timed("ov-int8-nncf", lambda: export_openvino(
        fp32, work / f"{name}.int8-nncf.xml", "int8", calibration_paths=calib))  # fmt: skip
    timed("ov-int8-qdq", lambda: export_openvino(
        fp32, work / f"{name}.int8-qdq.xml", "int8", int8_onnx=files["ort-int8"],
        int8_source="qdq"))  # fmt: skip
    print(f"exported {name}: " + ", ".join(f"{v} {s:.0f} s" for v, s in seconds.items()))
    return files, absent, seconds


def _split(data: Path) -> dict[str, Any]:
    from kdas.data.layouts import load_dataset

    splits = load_dataset(str(data), "market1501")
    return {"query": splits.query, "gallery": splits.gallery}


def _map(q: np.ndarray, g: np.ndarray, split: dict[str, Any]) -> float:
    from kdas.evaluation import compute_distance_matrix, evaluate_rank

    ids = {k: np.array([r.pid for r in split[k]]) for k in ("query", "gallery")}
    cams = {k: np.array([r.camid for r in split[k]]) for k in ("query", "gallery")}
    dist = compute_distance_matrix(q, g, metric="cosine")
    result = evaluate_rank(dist, ids["query"], ids["gallery"], cams["query"], cams["gallery"])
    return float(result.mAP)


def accuracy(
    model_dir: Path, files: dict[str, Path], split: dict[str, Any], s: Settings
) -> dict[str, Any]:
    """PyTorch fp32's mAP, and per variant max |diff| of unit embeddings and mAP (drop)."""
    from kdas.evaluation.distances import l2_normalize
    from kdas.evaluation.extract import extract_features
    from kdas.models import load as load_model
    from kdas.runtime.embedder import Embedder

    net = load_model(str(model_dir)).model
    ref = {
        k: l2_normalize(
            extract_features(net, split[k], SIZE, s.eval_batch, progress=False).features
        )
        for k in ("query", "gallery")
    }
    torch_map = _map(ref["query"], ref["gallery"], split)
    out: dict[str, Any] = {"torch": {"mAP": torch_map}}
    for variant, path in files.items():
        embedder = Embedder(path, intra_op_threads=s.threads)
        got = {
            k: embedder.embed_images([r.path for r in split[k]], batch_size=s.eval_batch)
            for k in ("query", "gallery")
        }
        diff = max(float(np.abs(ref[k] - got[k]).max()) for k in ("query", "gallery"))
        value = _map(got["query"], got["gallery"], split)
        out[variant] = {"max_abs_diff": diff, "mAP": value, "map_drop": torch_map - value}
        del embedder
        measure.release_memory()
    return out


def _time_variant(
    variant: str,
    model_dir: Path,
    path: Path,
    inputs: dict[int, np.ndarray],
    work: Path,
    s: Settings,
) -> list[dict[str, Any]]:
    """One variant at every batch size; its runner goes with this frame."""
    backend = VARIANTS[variant][0]
    runner = make_runner(backend, model_dir, {backend: path}, work, s.threads)
    rows = []
    for batch, x in inputs.items():
        timing = measure.time_calls(lambda x=x: runner(x), s.warmup, s.repeats, s.max_seconds)
        rows.append({"variant": variant, "batch": batch, **asdict(timing),
                     "ms_per_image": timing.p50_ms / batch})  # fmt: skip
    return rows


def latency(model_dir: Path, files: dict[str, Path], work: Path, s: Settings) -> list[dict]:
    """p50/p90 per variant and batch, through the runners `kdas bench` times, and the speed-up
    over ONNX Runtime of the same precision."""
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, 3, *SIZE), dtype=np.float32) for b in s.batches}
    rows = []
    for variant, path in files.items():
        rows += _time_variant(variant, model_dir, path, inputs, work, s)
        measure.release_memory()
    by_key = {(r["variant"], r["batch"]): r for r in rows}
    for r in rows:
        base = by_key.get((BASELINE[VARIANTS[r["variant"]][1]], r["batch"]))
        r["speedup_vs_ort"] = base["p50_ms"] / r["p50_ms"] if base else None
    return rows


def goals(models: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, m in models.items():
        acc = m["accuracy"]
        if "ov-fp32" in acc:
            diff = acc["ov-fp32"]["max_abs_diff"]
            out.append({"model": name, "goal": f"fp32 IR max |diff| <= {FP32_MAX_DIFF}",
                        "value": diff, "passed": diff <= FP32_MAX_DIFF})  # fmt: skip
        for variant in ("ort-int8", "ov-int8-nncf", "ov-int8-qdq"):
            if variant in acc:
                drop = acc[variant]["map_drop"]
                out.append({"model": name, "goal": f"{variant} mAP drop <= {INT8_MAX_MAP_DROP}",
                            "value": drop, "passed": drop <= INT8_MAX_MAP_DROP})  # fmt: skip
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(models: dict[str, Any]) -> str:
    header = ["model", "variant", "batch", "p50 ms/img", "x ORT", "max |diff|", "mAP", "mAP drop"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in models.items():
        for r in m["latency"]:
            acc = m["accuracy"].get(r["variant"], {})
            lines.append("| " + " | ".join([
                name, r["variant"], str(r["batch"]), f"{r['ms_per_image']:.2f}",
                _fmt(r["speedup_vs_ort"], ".2f"), _fmt(acc.get("max_abs_diff"), ".2e"),
                _fmt(acc.get("mAP"), ".4f"), _fmt(acc.get("map_drop"), "+.4f"),
            ]) + " |")  # fmt: skip
        lines += [
            f"| {name} | {v} | absent: {reason} | | | | | |" for v, reason in m["absent"].items()
        ]
    return "\n".join(lines)


def run_model(
    name: str, model_dir: Path, work: Path, calib: list[str], split: dict, s: Settings
) -> dict[str, Any]:
    files, absent, seconds = export_variants(name, model_dir, work, calib)
    acc = accuracy(model_dir, files, split, s)
    print(f"accuracy {name}: torch mAP {acc['torch']['mAP']:.4f}", flush=True)
    rows = latency(model_dir, files, work, s)
    print(f"timed {name}", flush=True)
    return {"dir": str(model_dir), "export_s": seconds, "absent": absent,
            "accuracy": acc, "latency": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, 8; fewer repeats")
    parser.add_argument("--models", default=",".join(MODELS), help="teacher,darts,part")
    parser.add_argument("--threads", type=int, default=None, help="default 2")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--calib-images", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    if not names or set(names) - set(MODELS):
        parser.error(f"--models takes names from {','.join(MODELS)}")
    s = settings(args)
    torch.set_num_threads(s.threads)
    started = time.perf_counter()
    load_before = os.getloadavg()
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(s.threads),
        "size": list(SIZE), "C": C, "quick": args.quick, "settings": asdict(s),
    }  # fmt: skip
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kdas-bench-openvino-") as tmp:
        work = Path(tmp)
        data = synthetic_data(work / "data", SIZE)
        dirs = make_models(work / "run", SIZE, C, train_images(data, SIZE, 64))
        calib = calibration_paths(data, "market1501", s.calib_images)
        split = _split(data)
        summary["calibration"] = {"images": len(calib), "source": "synthetic training split"}
        summary["split"] = {"query": len(split["query"]), "gallery": len(split["gallery"])}
        for name in names:
            models[name] = run_model(name, dirs[name], work, calib, split, s)
    summary["models"] = models
    summary["goals"] = goals(models)
    summary["load_average"] = {"before": load_before, "after": os.getloadavg()}
    summary["wall_s"] = time.perf_counter() - started
    target = atomic_write_json(args.out / "bench_openvino.json", summary)
    m = summary["machine"]
    cpu = m["lscpu_model"] or m["cpu"]
    print(f"\n{cpu}, {m['cores']} cores, {s.threads} threads; openvino {m['openvino']}, "
          f"onnxruntime {m['onnxruntime']}, nncf {m['nncf']}; {summary['date']}")  # fmt: skip
    print(table(models))
    print(json.dumps(summary["goals"], indent=1))
    print(f"-> {target} ({summary['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
