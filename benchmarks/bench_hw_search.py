"""Hardware-aware search on the protocol: students searched under latency budgets, measured on
the deployment backends beside the ResNet-50 teacher, and compared in accuracy, seed by seed,
with the unconstrained KDAS student of the same data, teacher and seeds.

    .venv/bin/python benchmarks/bench_hw_search.py            # about 75 min on 2 cores
    .venv/bin/python benchmarks/bench_hw_search.py --targets 0.3x-teacher --seeds 1

Recipes come from a pipeline config (default examples/protocol.toml, whose data and teacher
`kdas pipeline examples/protocol.toml` makes): its [search] and [student] sections, exactly as
`kdas ablate` runs them with dynamic distillation. The unconstrained student *is* that ablation's
dynamic run (runs/<name>/ablation/dynamic/seedS: reused when it exists, trained otherwise). Each
budgeted run changes two things only: the search's op set (`--ops`) and its latency term (a table
of `--backend` at the production shape, 256x128, and the student's width C, profiled once and
cached in benchmarks/results/; refused on another machine kind). The first target runs with
every seed (the goal's paired comparison); the others with the first seed (Pareto points).

Latency is the deployment question: every student (its genotype at the student's C, random
weights with adapted BatchNorm), the ResNet-50 teacher (last stride 1) and the ResNet-18 the
students were distilled from are exported to each CPU backend and timed in turns in one window
per backend (`kdas.export.latency_profile.measure_models`); each model counts on its own fastest
backend. Results: benchmarks/results/bench_hw_search.json and bench_hw_search_pareto.png.
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
PRODUCTION_SIZE = (256, 128)
DEMO_OPS = "none,skip_connect,max_pool_3x3,sep_conv_3x3,part_aware,conv_3x3,conv_1x1"


def _table(backend: str, macro: dict[str, Any], force: bool) -> Any:
    """The cached table of `backend` for this student macro (C, layers, reduction_positions)."""
    from kdas.errors import KdasError
    from kdas.export.latency_profile import ProfileConfig, profile_latency
    from kdas.models.latency_table import check_fingerprint, load_latency_table

    name = f"lut-{backend}-{PRODUCTION_SIZE[0]}x{PRODUCTION_SIZE[1]}-C{macro['C']}"
    default = ProfileConfig()  # the structure the plain file name stands for
    if (macro["layers"], tuple(macro["reduction_positions"])) != (
        default.layers,
        default.reduction_positions,
    ):
        name += f"-L{macro['layers']}-R{''.join(str(p) for p in macro['reduction_positions'])}"
    path = RESULTS / f"{name}.json"
    if path.is_file() and not force:
        try:
            table = load_latency_table(path)
            check_fingerprint(table)
            return table
        except KdasError as exc:
            print(f"profiling again: {exc}")
    cfg = ProfileConfig(backend=backend, size=PRODUCTION_SIZE, fit_networks=8, **macro)
    return profile_latency(cfg, path, force=True)


def _macro(model: Any) -> dict[str, Any]:
    return {"C": model.C, "layers": model.layers,
            "reduction_positions": tuple(model.reduction_positions)}  # fmt: skip


def _run(cfg: Any, seed: int, out: Path) -> dict[str, Any]:
    from kdas.models.genotype import load_genotype
    from kdas.search.ablation import run_one

    row = run_one(cfg, "dynamic", seed, out)
    row["genotype_obj"] = load_genotype(row["genotype"])
    history = out / "search" / "alphas.jsonl"
    lines = history.read_text().splitlines() if history.is_file() else []
    row["search_latency"] = json.loads(lines[-1]).get("latency") if lines else None
    return row


def _latencies(
    rows: list[dict[str, Any]], backends: list[str], repeats: int
) -> dict[str, dict[str, float]]:
    """ms per backend for every row's genotype (by label, at its own macro) and both
    teachers, all timed in turns in one window per backend."""
    from kdas.errors import BackendUnavailable
    from kdas.export.latency_profile import ProfileConfig, measure_models

    genotypes = {r["label"]: r["genotype_obj"] for r in rows}
    out: dict[str, dict[str, float]] = {}
    for backend in backends:
        cfg = ProfileConfig(backend=backend, size=PRODUCTION_SIZE, repeats=repeats)
        structures = {
            r["label"]: ProfileConfig(backend=backend, size=PRODUCTION_SIZE, **r["macro"])
            for r in rows
        }
        try:
            out[backend] = measure_models(
                genotypes, cfg, teachers=("resnet50", "resnet18"), structures=structures
            )
        except BackendUnavailable as exc:
            print(f"{backend}: {exc}")
        print(f"{backend}: {json.dumps(out.get(backend), default=str)}", flush=True)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _best(ms: dict[str, dict[str, float]], label: str) -> tuple[str, float]:
    backend = min(ms, key=lambda b: ms[b][label])
    return backend, ms[backend][label]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/protocol.toml")
    parser.add_argument("--backend", default="openvino-int8", help="the table's backend")
    parser.add_argument("--targets", default="0.3x-teacher,0.5x-teacher,1x-teacher")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the first target")
    parser.add_argument("--weight", type=float, default=None, help="latency weight λ")
    parser.add_argument("--ops", default=DEMO_OPS, help="op set of the budgeted searches")
    parser.add_argument("--backends", default=",".join(CPU_BACKENDS))
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--profile-again", action="store_true")
    parser.add_argument(
        "--layers",
        type=int,
        default=None,
        help="cells of the budgeted students (default: the config's)",
    )
    parser.add_argument(
        "--reductions",
        default=None,
        help="their reduction positions, e.g. 1,3 (default: the config's)",
    )
    parser.add_argument("--tag", default="", help="suffix of the result files and run folders")
    args = parser.parse_args()

    from kdas.pipeline.config import PipelineConfig
    from kdas.pipeline.pareto import front, plot_pareto
    from kdas.search.ablation import from_pipeline, paired_difference
    from kdas.utils.config import load_typed_config
    from kdas.utils.machine import cpu_model

    RESULTS.mkdir(parents=True, exist_ok=True)
    pipeline = load_typed_config(PipelineConfig, ROOT / args.config)
    base = from_pipeline(pipeline)
    run_root = Path(pipeline.runs_dir) / pipeline.name
    reference = _macro(base.student.model)  # the unconstrained students' structure
    budgeted = dict(reference)
    if args.layers is not None:
        budgeted["layers"] = args.layers
    if args.reductions is not None:
        budgeted["reduction_positions"] = tuple(int(p) for p in args.reductions.split(","))
    table = _table(args.backend, budgeted, args.profile_again)
    C = budgeted["C"]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    plan = [("none", s) for s in range(args.seeds)] + [(targets[0], s) for s in range(args.seeds)]
    plan += [(t, 0) for t in targets[1:]]
    rows = []
    for target, seed in plan:
        cfg = copy.deepcopy(base)
        out = run_root / "ablation" / "dynamic" / f"seed{seed}"
        if target != "none":
            for model in (cfg.search.model, cfg.student.model):
                model.layers = budgeted["layers"]
                model.reduction_positions = budgeted["reduction_positions"]
            cfg.search.ops = [op.strip() for op in args.ops.split(",")]
            cfg.search.latency.table, cfg.search.latency.target = str(table.path), target
            if args.weight is not None:
                cfg.search.latency.weight = args.weight
            out = run_root / f"hw{args.tag}" / target / f"seed{seed}"
        started = time.perf_counter()
        row = _run(cfg, seed, out)
        row |= {"target": target, "label": f"{target}/seed{seed}"}
        row["macro"] = reference if target == "none" else budgeted
        row["seconds"] = time.perf_counter() - started
        # the table predicts the students of its own structure only
        same = row["macro"] == budgeted
        row["predicted_ms"] = table.predict(row["genotype_obj"]).ms if same else None
        print(f"{row['label']}: mAP {100 * row['mAP']:.1f}, predicted {_ms(row['predicted_ms'])} "
              f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
        rows.append(row)

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    ms = _latencies(rows, backends, args.repeats)
    teachers = {name: _best(ms, name) for name in ("resnet50", "resnet18")}
    r50_ms = teachers["resnet50"][1]
    for row in rows:
        row["measured_ms"] = {b: ms[b][row["label"]] for b in ms}
        row["best_backend"], row["best_ms"] = _best(ms, row["label"])
        row["x_resnet50"] = row["best_ms"] / r50_ms
        row["measured_on_table_backend"] = ms.get(args.backend, {}).get(row["label"])
        row.pop("genotype_obj")
    runs = [{**r, "mode": r["target"]} for r in rows]
    paired = [paired_difference(runs, targets[0], "none", metric) for metric in ("mAP", "rank1")]
    teacher_dir = Path(base.student.teacher)
    teacher_final = json.loads((teacher_dir / "metrics.json").read_text())["final"]
    cpu = cpu_model()
    points = {
        "batch": 1,
        "students": [
            {"run": r["label"], "target": r["target"], "mAP": r["mAP"], "rank1": r["rank1"],
             "latency_ms": r["best_ms"], "backend": r["best_backend"], "batch": 1, "cpu": cpu}
            for r in rows
        ],
        "teacher": {"run": "teacher (ResNet-18)", "mAP": teacher_final["mAP"],
                    "rank1": teacher_final["rank1"], "latency_ms":
                    teachers["resnet18"][1], "backend": teachers["resnet18"][0], "batch": 1,
                    "cpu": cpu},
    }  # fmt: skip
    plot_pareto(points, RESULTS / f"bench_hw_search{args.tag}_pareto.png")
    result = {
        "cpu": cpu,
        "config": args.config,
        "student_C": C,
        "macro_unconstrained": reference,
        "macro_budgeted": budgeted,
        "size": list(PRODUCTION_SIZE),
        "table": str(table.path),
        "table_backend": table.backend,
        "table_teacher_ms": (table.teacher or {}).get("ms"),
        "teachers_best": {k: {"backend": b, "ms": v} for k, (b, v) in teachers.items()},
        "measured_ms": ms,
        "rows": rows,
        "paired": paired,
        "pareto_front": [p["run"] for p in front(points["students"])],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (RESULTS / f"bench_hw_search{args.tag}.json").write_text(
        json.dumps(result, indent=2, default=str)
    )
    print(f"\n{cpu}; ResNet-50 best {teachers['resnet50'][0]} {r50_ms:.2f} ms; "
          f"student C={C} at {PRODUCTION_SIZE[0]}x{PRODUCTION_SIZE[1]}, batch 1")  # fmt: skip
    print("| run | predicted ms | best backend | measured ms | x ResNet-50 | mAP | rank-1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['label']} | {_ms(r['predicted_ms'])} | {r['best_backend']} | "
              f"{r['best_ms']:.2f} | {r['x_resnet50']:.2f} | {100 * r['mAP']:.1f} | "
              f"{100 * r['rank1']:.1f} |")  # fmt: skip
    for diff in paired:
        if diff:
            interval = (
                ""
                if diff["low"] is None
                else (f" [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]")
            )
            print(f"{targets[0]} - none, {diff['metric']}: {100 * diff['mean']:+.1f}{interval} "
                  f"({diff['verdict']})")  # fmt: skip


if __name__ == "__main__":
    main()
