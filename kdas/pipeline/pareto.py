"""mAP against measured latency for students searched at different latency budgets, with the
teacher marked: the picture that says whether hardware-aware search bought speed for accuracy.

Each point is one pipeline run folder (runs/NAME): the student's mAP from its evaluation and
its latency as `kdas bench` measured it, on the student's fastest backend at one batch size
(the teacher on its own fastest backend: each model is deployed where it is fastest).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdas.errors import KdasError
from kdas.files import (
    BENCH_FILE,
    CONFIG_FILE,
    EVAL_DIR,
    EXPORT_DIR,
    METRICS_FILE,
    PARETO_FILE,
    PARETO_PLOT,
)
from kdas.utils.atomic import atomic_output_path, atomic_write_json


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _best(bench: dict[str, Any], role: str, batch: int) -> dict[str, Any] | None:
    for entry in bench.get("best") or []:
        if entry.get("batch") == batch and role in entry:
            return entry[role]
    return None


def _target(run: Path) -> str:
    doc = _read(run / "search" / CONFIG_FILE) or {}
    latency = (doc.get("config") or {}).get("latency") or {}
    return str(latency.get("target") or "none")


def run_point(run: str | Path, role: str = "student", batch: int = 1) -> dict[str, Any] | None:
    """One model of a run as a point, or None where its evaluation or bench is missing."""
    run = Path(run)
    metrics = (_read(run / EVAL_DIR / role / METRICS_FILE) or {}).get("metrics")
    bench = _read(run / EXPORT_DIR / BENCH_FILE)
    best = _best(bench, role, batch) if bench else None
    if not metrics or not best:
        return None
    return {
        "run": run.name,
        "role": role,
        "target": _target(run) if role == "student" else None,
        "mAP": float(metrics["mAP"]),
        "rank1": float(metrics["rank1"]),
        "latency_ms": float(best["p50_ms"]),
        "backend": best["backend"],
        "batch": batch,
        "cpu": (bench.get("machine") or {}).get("cpu"),
    }


def pareto_points(runs: Sequence[str | Path], batch: int = 1) -> dict[str, Any]:
    """Students of every run that has both numbers, and the teacher of the first that has."""
    students = [p for p in (run_point(r, "student", batch) for r in runs) if p]
    teachers = [p for p in (run_point(r, "teacher", batch) for r in runs) if p]
    if not students:
        raise KdasError(
            "no run has both an evaluated student and a bench result: run the evaluate and "
            f"bench stages first ({', '.join(str(r) for r in runs)})"
        )
    return {"batch": batch, "students": students, "teacher": teachers[0] if teachers else None}


def front(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-dominated points (no other point is both faster and more accurate), by latency."""
    ordered = sorted(points, key=lambda p: (p["latency_ms"], -p["mAP"]))
    kept: list[dict[str, Any]] = []
    for point in ordered:
        if not kept or point["mAP"] > kept[-1]["mAP"]:
            kept.append(point)
    return kept


def plot_pareto(points: dict[str, Any], out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    students = points["students"]
    ax.scatter([p["latency_ms"] for p in students], [100 * p["mAP"] for p in students], s=40,
               label="students", zorder=3)  # fmt: skip
    for p in students:
        label = f"{p['run']} ({p['target']}, {p['backend']})"
        ax.annotate(label, (p["latency_ms"], 100 * p["mAP"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    best = front(students)
    ax.plot([p["latency_ms"] for p in best], [100 * p["mAP"] for p in best], ls="--", lw=1,
            color="tab:blue", label="Pareto front")  # fmt: skip
    teacher = points.get("teacher")
    if teacher:
        ax.scatter([teacher["latency_ms"]], [100 * teacher["mAP"]], marker="*", s=180,
                   color="tab:red", label=f"teacher ({teacher['backend']})", zorder=4)  # fmt: skip
    ax.set_xlabel(f"measured latency, ms (batch {points['batch']}, each model's best backend)")
    ax.set_ylabel("mAP (%)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    cpu = (teacher or students[0]).get("cpu") or ""
    ax.set_title(f"accuracy against latency\n{cpu}", fontsize=9)
    fig.tight_layout()
    with atomic_output_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(out)


def write_pareto(runs: Sequence[str | Path], out_dir: str | Path, batch: int = 1) -> dict[str, Any]:
    """pareto.json and pareto.png in `out_dir` (refused where `out_dir` is a file)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise KdasError(f"--out {out_dir} is a file: give a folder for pareto.json / pareto.png")
    points = pareto_points(runs, batch)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / PARETO_FILE, points)
    plot_pareto(points, out_dir / PARETO_PLOT)
    return points
