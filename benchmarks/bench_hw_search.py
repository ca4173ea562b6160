"""Hardware-aware search, end to end: students searched at several latency budgets, their
measured deployment latency next to the ResNet-50 teacher's, and their accuracy.

    .venv/bin/python benchmarks/bench_hw_search.py                   # about 30 min on 2 cores
    .venv/bin/python benchmarks/bench_hw_search.py --targets none,0.3x-teacher --epochs 4

Latency is the deployment question, asked at the production shape: every searched genotype is
built at C = 64, 256x128, batch 1 and measured whole on each CPU backend (random weights with
adapted BatchNorm, the way `kdas latency` measures); each model counts on its fastest backend,
the teacher (ResNet-50, last stride 1) on its own. The search reads the latency table of the
`--backend` (profiled once and cached in benchmarks/results/, refused on another machine kind).

Accuracy is measured on the embedded synthetic Market-1501-layout set with the demo's recipe
(examples/demo.toml: a ResNet-18 teacher, a C = 8 supernet searched at 128x64, C = 16 students
retrained at 128x64), the same data, teacher and seeds for every budget: what a 2-core machine
can train in minutes. So the mAP column compares budgets with one another, not with the paper.
Results: benchmarks/results/bench_hw_search.json, pareto.png beside it; docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CPU_BACKENDS = ("openvino-int8", "openvino-bf16", "openvino-fp32", "ort-int8", "ort-fp32")


def _table(backend: str, force: bool) -> Any:
    from kdas.errors import KdasError
    from kdas.export.latency_profile import ProfileConfig, profile_latency
    from kdas.models.latency_table import check_fingerprint, load_latency_table

    path = RESULTS / f"lut-{backend}-256x128-C64.json"
    if path.is_file() and not force:
        try:
            table = load_latency_table(path)
            check_fingerprint(table)
            return table
        except KdasError as exc:
            print(f"profiling again: {exc}")
    return profile_latency(ProfileConfig(backend=backend), path, force=True)


def _deployed_latency(genotype: Any, backends: list[str]) -> dict[str, float]:
    """ms at 256x128, C = 64, batch 1, 2 threads on every backend this machine has."""
    from kdas.errors import BackendUnavailable
    from kdas.export.latency_profile import ProfileConfig, measure_genotype

    out = {}
    for backend in backends:
        try:
            out[backend] = measure_genotype(genotype, ProfileConfig(backend=backend))
        except BackendUnavailable as exc:
            print(f"{backend}: {exc}")
    return out


def _teacher_latency(backends: list[str]) -> dict[str, float]:
    from kdas.errors import BackendUnavailable
    from kdas.export.latency_profile import ProfileConfig, measure_teacher

    out = {}
    for backend in backends:
        try:
            out[backend] = measure_teacher(ProfileConfig(backend=backend))["ms"]
        except BackendUnavailable as exc:
            print(f"{backend}: {exc}")
    return out


def _configs(epochs: int | None) -> Any:
    from kdas.pipeline.config import PipelineConfig
    from kdas.utils.config import load_typed_config

    cfg = load_typed_config(PipelineConfig, ROOT / "examples" / "demo.toml", {})
    cfg.data.root = str(RESULTS / "hw-search" / "data")
    if epochs:
        cfg.search.run.epochs = epochs
    for section in (cfg.teacher, cfg.search, cfg.student):
        section.data.root, section.data.layout = cfg.data.root, cfg.data.layout
        section.run.progress = False
    return cfg


def _one_budget(cfg: Any, target: str, table: Any, work: Path, teacher: Path) -> dict[str, Any]:
    from kdas.engine.evaluate import evaluate_artifact
    from kdas.engine.stages import train_student
    from kdas.files import GENOTYPE_FILE
    from kdas.search.loop import run_search

    search = copy.deepcopy(cfg.search)
    search.teacher = str(teacher)
    if target != "none":
        search.latency.table, search.latency.target = str(table.path), target
    folder = work / f"target-{target}"
    started = time.perf_counter()
    result = run_search(search, folder / "search", force=True)
    search_s = time.perf_counter() - started
    student = copy.deepcopy(cfg.student)
    student.genotype, student.teacher = str(folder / "search" / GENOTYPE_FILE), str(teacher)
    train_student(student, folder / "student", force=True)
    metrics = evaluate_artifact(folder / "student", cfg.data.root, cfg.data.layout)["metrics"]
    last = (result.history[-1] if result.history else {}).get("latency") or {}
    return {
        "target": target,
        "target_ms": last.get("target_ms"),
        "genotype": {"normal": result.genotype.normal, "reduce": result.genotype.reduce},
        "predicted_ms": table.predict(result.genotype).ms,
        "expected_ms_last_epoch": last.get("expected_ms"),
        "search_seconds": search_s,
        "skips_normal": sum(op == "skip_connect" for op, _ in result.genotype.normal),
        "mAP": metrics["mAP"],
        "rank1": metrics["rank1"],
        "genotype_obj": result.genotype,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="openvino-int8", help="the table's backend")
    parser.add_argument("--targets", default="none,1x-teacher,0.5x-teacher,0.3x-teacher")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs (demo: 4)")
    parser.add_argument("--ops", default="auto-reid+dense", help="op set, every budget")
    parser.add_argument("--profile-again", action="store_true")
    args = parser.parse_args()

    from kdas.data.synthetic import synthesize
    from kdas.engine.evaluate import evaluate_artifact
    from kdas.engine.stages import train_teacher
    from kdas.pipeline.pareto import front, plot_pareto
    from kdas.utils.machine import cpu_model

    RESULTS.mkdir(parents=True, exist_ok=True)
    work = RESULTS / "hw-search"
    cfg = _configs(args.epochs)
    cfg.search.ops = args.ops
    table = _table(args.backend, args.profile_again)
    if not (Path(cfg.data.root) / "synth_config.json").is_file():
        synthesize(Path(cfg.data.root), cfg.data.synthesize, progress=False)
    teacher_dir = work / "teacher"
    if not (teacher_dir / "config.json").is_file():
        train_teacher(cfg.teacher, teacher_dir, force=True)
    teacher_metrics = evaluate_artifact(teacher_dir, cfg.data.root, cfg.data.layout)["metrics"]
    teacher_ms = _teacher_latency(list(CPU_BACKENDS))
    rows = []
    for target in args.targets.split(","):
        row = _one_budget(cfg, target.strip(), table, work, teacher_dir)
        row["measured_ms"] = _deployed_latency(row.pop("genotype_obj"), list(CPU_BACKENDS))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "genotype"}, default=str))
    t_best = min(teacher_ms, key=teacher_ms.get)
    for row in rows:
        best = min(row["measured_ms"], key=row["measured_ms"].get)
        row["best_backend"], row["best_ms"] = best, row["measured_ms"][best]
        row["x_teacher_best"] = row["best_ms"] / teacher_ms[t_best]
    cpu = cpu_model()
    points = {
        "batch": 1,
        "students": [
            {"run": f"target {r['target']}", "target": r["target"], "mAP": r["mAP"],
             "rank1": r["rank1"], "latency_ms": r["best_ms"], "backend": r["best_backend"],
             "batch": 1, "cpu": cpu}
            for r in rows
        ],
        "teacher": {"run": "teacher", "mAP": teacher_metrics["mAP"],
                    "rank1": teacher_metrics["rank1"], "latency_ms": teacher_ms[t_best],
                    "backend": t_best, "batch": 1, "cpu": cpu},
    }  # fmt: skip
    plot_pareto(points, RESULTS / "bench_hw_search_pareto.png")
    result = {
        "cpu": cpu,
        "table": str(table.path),
        "table_backend": table.backend,
        "table_teacher_ms": (table.teacher or {}).get("ms"),
        "teacher_resnet50_ms": teacher_ms,
        "teacher_best": {"backend": t_best, "ms": teacher_ms[t_best]},
        "accuracy_teacher": teacher_metrics,
        "rows": rows,
        "pareto_front": [p["run"] for p in front(points["students"])],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (RESULTS / "bench_hw_search.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{cpu}; teacher ResNet-50 best {t_best} {teacher_ms[t_best]:.2f} ms")
    print("| target | predicted ms | best backend | measured ms | x teacher | mAP | skips |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['target']} | {r['predicted_ms']:.2f} | {r['best_backend']} | "
              f"{r['best_ms']:.2f} | {r['x_teacher_best']:.2f} | {100 * r['mAP']:.1f} | "
              f"{r['skips_normal']} |")  # fmt: skip


if __name__ == "__main__":
    main()
