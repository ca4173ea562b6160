"""The paper's Table 1 ablation as one command: search + retrain per distillation mode and seed.

It only composes the stage functions (`run_search`, `train_student`); every run lands in its own
folder, so an interrupted ablation resumes where it stopped and finished runs are reused.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kdas.engine.config import StudentTrainConfig
from kdas.engine.distributed import env_rank
from kdas.files import (
    ABLATION_CSV,
    ABLATION_FILE,
    ABLATION_PLOT,
    ABLATION_TABLE,
    CONFIG_FILE,
    GENOTYPE_FILE,
    METRICS_FILE,
)
from kdas.progress import console
from kdas.search.config import SearchConfig
from kdas.utils.atomic import atomic_output_path, atomic_write_json, atomic_write_text
from kdas.utils.config import to_dict

MODES = ("none", "constant", "dynamic")
MODE_LABELS = {
    "none": "Baseline (CE + triplet)",
    "constant": "Baseline + Distillation (T = 2)",
    "dynamic": "Distillation + Dynamic Temperature",
}


@dataclass
class AblationConfig:
    search: SearchConfig = field(default_factory=SearchConfig)
    student: StudentTrainConfig = field(default_factory=StudentTrainConfig)
    modes: tuple[str, ...] = MODES
    seeds: int = 3
    # "same": each mode also retrains its student; otherwise one recipe retrains every cell
    retrain_kd: Literal["same", "none", "constant", "dynamic"] = "same"


def _run_one(cfg: AblationConfig, mode: str, seed: int, out: Path) -> dict[str, Any]:
    from kdas.engine.stages import train_student
    from kdas.search.loop import run_search

    search_dir, student_dir = out / "search", out / "student"
    search_cfg = copy.deepcopy(cfg.search)
    search_cfg.loss.kd = replace(search_cfg.loss.kd, mode=mode)
    search_cfg.run.seed = seed
    search_cfg.split_seed = seed
    if not (search_dir / GENOTYPE_FILE).is_file():
        run_search(search_cfg, search_dir, resume=True)
    student_cfg = copy.deepcopy(cfg.student)
    student_cfg.genotype = str(search_dir / GENOTYPE_FILE)
    retrain = mode if cfg.retrain_kd == "same" else cfg.retrain_kd
    student_cfg.loss.kd = replace(student_cfg.loss.kd, mode=retrain)
    student_cfg.run.seed = seed
    if not (student_dir / CONFIG_FILE).is_file():
        train_student(student_cfg, student_dir, resume=True)
    facts = json.loads((student_dir / CONFIG_FILE).read_text())["facts"]
    final = json.loads((student_dir / METRICS_FILE).read_text())["final"]
    return {
        "mode": mode,
        "seed": seed,
        "mAP": final["mAP"],
        "rank1": final["rank1"],
        "rank5": final["rank5"],
        "rank10": final["rank10"],
        "params_m": facts["parameters"]["total"] / 1e6,
        "genotype": str(search_dir / GENOTYPE_FILE),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]], modes: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        if not mine:
            continue
        row: dict[str, Any] = {
            "mode": mode,
            "label": MODE_LABELS.get(mode, mode),
            "runs": len(mine),
        }
        for key in ("mAP", "rank1", "rank5", "rank10", "params_m"):
            row[key], row[f"{key}_std"] = _mean_std([r[key] for r in mine])
        rows.append(row)
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | runs | mAP | rank-1 | rank-5 | rank-10 | params (M) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [
            f"{100 * r[k]:.1f} ± {100 * r[k + '_std']:.1f}"
            for k in ("mAP", "rank1", "rank5", "rank10")
        ]
        params = f"{r['params_m']:.2f} ± {r['params_m_std']:.2f}"
        lines.append(f"| {r['label']} | {r['runs']} | {' | '.join(cells)} | {params} |")
    return "\n".join(lines) + "\n"


def to_csv(runs: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(runs[0]))
    writer.writeheader()
    writer.writerows(runs)
    return buffer.getvalue()


def plot_ablation(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("mAP", "mAP"), ("rank1", "rank-1")]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(
            xs,
            [100 * r[k] for k, _ in metrics],
            width,
            yerr=[100 * r[k + "_std"] for k, _ in metrics],
            capsize=4,
            label=r["label"],
        )
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(metrics))])
    ax.set_xticklabels([label for _, label in metrics])
    ax.set_ylabel("%")
    ax.set_title("Ablation: distillation during search and retraining (mean ± std)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run_ablation(cfg: AblationConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """All modes × seeds on the same data and split seeds; writes ablation.md/.csv/.png/.json."""
    out_dir = Path(out_dir)
    runs = []
    for seed in range(cfg.seeds):
        for mode in cfg.modes:
            console.log(f"ablation: {mode}, seed {seed}")
            runs.append(_run_one(cfg, mode, seed, out_dir / mode / f"seed{seed}"))
    rows = summarize(runs, tuple(cfg.modes))
    if env_rank() != 0:  # under torchrun every rank ran; rank 0 writes
        return rows
    atomic_write_json(out_dir / ABLATION_FILE, {"config": to_dict(cfg), "runs": runs, "rows": rows})
    atomic_write_text(out_dir / ABLATION_TABLE, to_markdown(rows))
    atomic_write_text(out_dir / ABLATION_CSV, to_csv(runs))
    plot_ablation(rows, out_dir / ABLATION_PLOT)
    return rows
