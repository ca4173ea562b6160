"""Levers against the student-teacher gap, measured on the protocol (issue 16, item 5).

For each seed it retrains the genotype that `kdas ablate --config examples/protocol.toml` searched
with dynamic distillation (runs/protocol/ablation/dynamic/seedS/search/genotype.json) under a
changed recipe, and compares it, paired by seed, with that ablation run's own student:

  feature   + feature-map distillation (loss.lambda_feature = 1)
  long      twice the retraining epochs (20 instead of 10)
  both      the two together

Prints a table and writes benchmarks/results/levers-<levers>.json. Run it after (or beside)
the ablation:
  python benchmarks/bench_levers.py [--levers feature,long] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from kdas.engine.config import StudentTrainConfig
from kdas.engine.runner import has_checkpoint
from kdas.engine.stages import train_student
from kdas.files import CONFIG_FILE, GENOTYPE_FILE, METRICS_FILE
from kdas.pipeline.config import PipelineConfig
from kdas.search.ablation import from_pipeline, t_quantile
from kdas.utils.atomic import atomic_write_json
from kdas.utils.config import load_typed_config
from kdas.utils.machine import cpu_model

CONFIG = Path("examples/protocol.toml")
RESULTS = Path("benchmarks/results")  # levers-<levers>.json


def _recipe(lever: str, base: StudentTrainConfig) -> StudentTrainConfig:
    if lever not in ("feature", "long", "both"):
        raise SystemExit(f"unknown lever {lever!r} (feature, long, both)")
    if lever in ("feature", "both"):
        base.loss.lambda_feature = 1.0
    if lever in ("long", "both"):
        base.run.epochs *= 2
    return base


def _final(folder: Path) -> dict:
    return json.loads((folder / METRICS_FILE).read_text())["final"]


def _wait_for(path: Path) -> None:
    while not path.is_file():
        time.sleep(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levers", default="feature,long")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    pipeline = load_typed_config(PipelineConfig, CONFIG)
    ablation_dir = Path(pipeline.runs_dir) / pipeline.name / "ablation" / "dynamic"
    out_dir = Path(pipeline.runs_dir) / pipeline.name / "levers"
    rows = []
    for seed in range(args.seeds):
        for lever in args.levers.split(","):
            base = ablation_dir / f"seed{seed}"
            genotype = base / "search" / GENOTYPE_FILE
            _wait_for(genotype)
            cfg = _recipe(lever, from_pipeline(pipeline).student)
            cfg.genotype, cfg.run.seed = str(genotype), seed
            out = out_dir / lever / f"seed{seed}"
            started = time.perf_counter()
            if not (out / CONFIG_FILE).is_file():
                train_student(cfg, out, resume=has_checkpoint(out))
            seconds = time.perf_counter() - started
            _wait_for(base / "student" / METRICS_FILE)
            mine, ref = _final(out), _final(base / "student")
            rows.append({
                "lever": lever, "seed": seed, "seconds": seconds,
                "mAP": mine["mAP"], "rank1": mine["rank1"], "mAP_se": mine.get("mAP_se"),
                "baseline_mAP": ref["mAP"], "baseline_rank1": ref["rank1"],
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for lever in args.levers.split(","):
        mine = [r for r in rows if r["lever"] == lever]
        for metric in ("mAP", "rank1"):
            diffs = [r[metric] - r[f"baseline_{metric}"] for r in mine]
            mean = statistics.fmean(diffs)
            half = None
            if len(diffs) > 1:
                half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
            summary[f"{lever}/{metric}"] = {"diffs": diffs, "mean": mean, "ci95_half": half}
    print(f"\n{'lever':10} {'metric':6} {'mean diff':>10} {'95% CI':>18}  per seed")
    for key, s in summary.items():
        lever, metric = key.split("/")
        ci = "n/a"
        if s["ci95_half"] is not None:
            low, high = 100 * (s["mean"] - s["ci95_half"]), 100 * (s["mean"] + s["ci95_half"])
            ci = f"[{low:+.1f}, {high:+.1f}]"
        per_seed = " ".join(f"{100 * d:+.1f}" for d in s["diffs"])
        print(f"{lever:10} {metric:6} {100 * s['mean']:+10.1f} {ci:>18}  {per_seed}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.levers.replace(",", "-")
    atomic_write_json(
        RESULTS / f"levers-{name}.json", {"cpu": cpu_model(), "rows": rows, "summary": summary}
    )


if __name__ == "__main__":
    main()
