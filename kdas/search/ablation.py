"""The paper's Table 1 ablation as one command: search + retrain per distillation mode and seed.

It only composes the stage functions (`run_search`, `train_student`); every run lands in its own
folder, so an interrupted ablation resumes where it stopped and finished runs are reused.

Besides mean ± std per mode it decides the paper's claims: runs of one seed share their data
split and initialisation, so each pair of modes is compared by its per-seed differences, with a
95 % Student-t interval over the seeds. A claim "A beats B" holds when the interval lies above 0,
is reversed when it lies below, and is undecided when it contains 0. Each run also records its
evaluation noise (the bootstrap standard error over queries of its test mAP and rank-1).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kdas.engine.config import StudentTrainConfig, with_data_set
from kdas.engine.distributed import env_rank
from kdas.errors import KdasError
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
from kdas.utils.outputs import check_out_dir

MODES = ("none", "constant", "dynamic")
MODE_LABELS = {
    "none": "Baseline (CE + triplet)",
    "constant": "Baseline + Distillation (T = 2)",
    "dynamic": "Distillation + Dynamic Temperature",
}
# Paired differences reported (first minus second), and the paper's claims among them.
COMPARISONS = (("dynamic", "constant"), ("constant", "none"), ("dynamic", "none"))
CLAIMS = (
    ("dynamic", "constant", "Dynamic temperature beats constant temperature"),
    ("constant", "none", "Distillation (constant T) beats no distillation"),
)
DIFFERENCE_METRICS = (("mAP", "mAP"), ("rank1", "rank-1"))
CONFIDENCE = 0.95


@dataclass
class AblationConfig:
    search: SearchConfig = field(default_factory=SearchConfig)
    student: StudentTrainConfig = field(default_factory=StudentTrainConfig)
    modes: tuple[str, ...] = MODES
    seeds: int = 3
    # "same": each mode also retrains its student; otherwise one recipe retrains every cell
    retrain_kd: Literal["same", "none", "constant", "dynamic"] = "same"


def run_one(cfg: AblationConfig, mode: str, seed: int, out: Path) -> dict[str, Any]:
    """Search and retrain one (mode, seed) into `out`; a finished part is reused, an interrupted
    one resumed, so benchmarks can pair their runs with the ablation's own."""
    from kdas.engine.runner import has_checkpoint
    from kdas.engine.stages import train_student
    from kdas.search.loop import run_search

    search_dir, student_dir = out / "search", out / "student"
    search_cfg = copy.deepcopy(cfg.search)
    search_cfg.loss.kd = replace(search_cfg.loss.kd, mode=mode)
    search_cfg.run.seed = seed
    search_cfg.split_seed = seed
    if not (search_dir / GENOTYPE_FILE).is_file():
        run_search(search_cfg, search_dir, resume=has_checkpoint(search_dir))
    student_cfg = copy.deepcopy(cfg.student)
    student_cfg.genotype = str(search_dir / GENOTYPE_FILE)
    retrain = mode if cfg.retrain_kd == "same" else cfg.retrain_kd
    student_cfg.loss.kd = replace(student_cfg.loss.kd, mode=retrain)
    student_cfg.run.seed = seed
    if not (student_dir / CONFIG_FILE).is_file():
        train_student(student_cfg, student_dir, resume=has_checkpoint(student_dir))
    facts = json.loads((student_dir / CONFIG_FILE).read_text())["facts"]
    final = json.loads((student_dir / METRICS_FILE).read_text())["final"]
    return {
        "mode": mode,
        "seed": seed,
        "mAP": final["mAP"],
        "rank1": final["rank1"],
        "rank5": final["rank5"],
        "rank10": final["rank10"],
        # evaluation noise of this run's test numbers; absent from runs made before kdas had it
        "mAP_se": final.get("mAP_se"),
        "rank1_se": final.get("rank1_se"),
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
        for key in ("mAP_se", "rank1_se"):  # one run's evaluation noise, averaged over runs
            known = [r[key] for r in mine if r.get(key) is not None]
            row[f"{key}_mean"] = statistics.fmean(known) if len(known) == len(mine) else None
        rows.append(row)
    return rows


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t critical value: P(|T| <= t) = confidence with df degrees."""
    from scipy import stats

    if df < 1:
        raise KdasError(f"a t interval needs at least 1 degree of freedom, got {df}")
    return float(stats.t.ppf((1 + confidence) / 2, df))


def verdict(low: float | None, high: float | None) -> str:
    """'holds' (interval above 0), 'reversed' (below 0) or 'undecided' (contains 0, or none)."""
    if low is None or high is None:
        return "undecided"
    if low > 0:
        return "holds"
    if high < 0:
        return "reversed"
    return "undecided"


def paired_difference(
    runs: Iterable[dict[str, Any]], first: str, second: str, metric: str
) -> dict[str, Any] | None:
    """`first` − `second` on `metric`, seed by seed, with its t-interval over the seeds.

    Only seeds both modes ran are paired; None when there is none. With one seed the
    difference has no interval (low/high None) and decides nothing.
    """
    by_seed = {mode: {} for mode in (first, second)}
    for r in runs:
        if r["mode"] in by_seed:
            by_seed[r["mode"]][r["seed"]] = r[metric]
    seeds = sorted(set(by_seed[first]) & set(by_seed[second]))
    if not seeds:
        return None
    diffs = [by_seed[first][s] - by_seed[second][s] for s in seeds]
    mean = statistics.fmean(diffs)
    low = high = std = None
    if len(diffs) > 1:
        std = statistics.stdev(diffs)
        half = t_quantile(len(diffs) - 1) * std / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
    return {
        "first": first,
        "second": second,
        "metric": metric,
        "seeds": seeds,
        "differences": diffs,
        "mean": mean,
        "std": std,
        "confidence": CONFIDENCE,
        "low": low,
        "high": high,
        "verdict": verdict(low, high),
    }


def paired_differences(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison of COMPARISONS on mAP and rank-1 whose two modes were run."""
    out = []
    for first, second in COMPARISONS:
        for metric, _ in DIFFERENCE_METRICS:
            diff = paired_difference(runs, first, second, metric)
            if diff is not None:
                out.append(diff)
    return out


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _interval(diff: dict[str, Any]) -> str:
    if diff["low"] is None:
        return "no interval (one seed)"
    return f"[{_points(diff['low'])}, {_points(diff['high'])}]"


def _claim_verdict(verdicts: list[str]) -> str:
    """A claim holds (or is reversed) when it does on every metric; otherwise undecided."""
    for outcome in ("holds", "reversed"):
        if all(v == outcome for v in verdicts):
            return outcome
    return "undecided"


def claims(differences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's Table 1 claims, each decided on mAP and rank-1, with one sentence."""
    out = []
    for first, second, text in CLAIMS:
        mine = [d for d in differences if (d["first"], d["second"]) == (first, second)]
        if not mine:
            continue
        outcome = _claim_verdict([d["verdict"] for d in mine])
        labels = dict(DIFFERENCE_METRICS)
        parts = [
            f"{labels[d['metric']]} {_points(d['mean'])} points, "
            f"{int(100 * d['confidence'])} % t-interval {_interval(d)} ({d['verdict']})"
            for d in mine
        ]
        seeds = len(mine[0]["seeds"])
        sentence = (
            f"{text}: {outcome} — {'; '.join(parts)} "
            f"({first} − {second}, {seeds} paired seed{'s' if seeds != 1 else ''})."
        )
        out.append(
            {
                "claim": text,
                "first": first,
                "second": second,
                "verdict": outcome,
                "metrics": {d["metric"]: d["verdict"] for d in mine},
                "sentence": sentence,
            }
        )
    return out


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


def _noise_line(rows: list[dict[str, Any]]) -> str | None:
    known = [r for r in rows if r.get("mAP_se_mean") is not None]
    if not known:
        return None
    cells = ", ".join(
        f"{r['mode']} ±{100 * r['mAP_se_mean']:.1f} mAP / ±{100 * r['rank1_se_mean']:.1f} rank-1"
        for r in known
    )
    return (
        "Evaluation noise of one run (bootstrap standard error over the test queries, mean over "
        f"runs, points): {cells}."
    )


def statistics_markdown(
    rows: list[dict[str, Any]], differences: list[dict[str, Any]], decided: list[dict[str, Any]]
) -> str:
    """The sections after the table: evaluation noise, paired differences, the claims."""
    lines = []
    noise = _noise_line(rows)
    if noise:
        lines += [noise, ""]
    if differences:
        lines += [
            "## Paired differences (same seed: same split and initialisation)",
            "",
            "| comparison | metric | seeds | mean diff (points) | 95 % t-interval | verdict |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        labels = dict(DIFFERENCE_METRICS)
        for d in differences:
            lines.append(
                f"| {d['first']} − {d['second']} | {labels[d['metric']]} | {len(d['seeds'])} | "
                f"{_points(d['mean'])} | {_interval(d)} | {d['verdict']} |"
            )
        lines.append("")
    if decided:
        lines += ["## Claims (paper, Table 1)", ""]
        lines += [f"- {c['sentence']}" for c in decided]
        lines.append("")
    return "\n".join(lines)


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


@dataclass
class AblationReport:
    """What `kdas ablate` found: every run, the per-mode rows, the differences, the claims."""

    runs: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    differences: list[dict[str, Any]]
    claims: list[dict[str, Any]]

    def markdown(self) -> str:
        """ablation.md: the table, then evaluation noise, paired differences and claims."""
        rest = statistics_markdown(self.rows, self.differences, self.claims)
        return to_markdown(self.rows) + ("\n" + rest if rest else "")


def report_ablation(runs: list[dict[str, Any]], modes: tuple[str, ...]) -> AblationReport:
    """The statistics of finished runs (no training): rows, paired differences, claims."""
    differences = paired_differences(runs)
    return AblationReport(runs, summarize(runs, modes), differences, claims(differences))


def write_ablation(cfg: AblationConfig, report: AblationReport, out_dir: Path) -> None:
    payload = {
        "config": to_dict(cfg),
        "runs": report.runs,
        "rows": report.rows,
        "differences": report.differences,
        "claims": report.claims,
    }
    atomic_write_json(out_dir / ABLATION_FILE, payload)
    atomic_write_text(out_dir / ABLATION_TABLE, report.markdown())
    atomic_write_text(out_dir / ABLATION_CSV, to_csv(report.runs))
    plot_ablation(report.rows, out_dir / ABLATION_PLOT)


def run_ablation_report(cfg: AblationConfig, out_dir: str | Path) -> AblationReport:
    """All modes × seeds on the same data and split seeds; writes ablation.md/.csv/.png/.json."""
    out_dir = check_out_dir(out_dir)
    runs = []
    for seed in range(cfg.seeds):
        for mode in cfg.modes:
            console.log(f"ablation: {mode}, seed {seed}")
            runs.append(run_one(cfg, mode, seed, out_dir / mode / f"seed{seed}"))
    report = report_ablation(runs, tuple(cfg.modes))
    if env_rank() == 0:  # under torchrun every rank ran; rank 0 writes
        write_ablation(cfg, report, out_dir)
    return report


def run_ablation(cfg: AblationConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """`run_ablation_report`'s per-mode rows (mean ± std of each metric)."""
    return run_ablation_report(cfg, out_dir).rows


def from_pipeline(pipeline: Any) -> AblationConfig:
    """An ablation of a pipeline config's `[search]` and `[student]` recipes: its data set
    (`[data]`) and its teacher (`runs_dir/name/teacher`) filled in, as the pipeline's own search
    and student stages do. Seeds, modes and retrain_kd keep their defaults (3, all, "same")."""
    teacher = str(Path(pipeline.runs_dir) / pipeline.name / "teacher")
    sections = {}
    for name in ("search", "student"):
        section = with_data_set(getattr(pipeline, name), pipeline.data)
        section.teacher = section.teacher or teacher
        sections[name] = section
    return AblationConfig(**sections)
