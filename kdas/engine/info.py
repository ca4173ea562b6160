"""`kdas info`: the facts of a model folder (size, cost, genotype, recipe, scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kdas.files import METRICS_FILE
from kdas.models.artifacts import read_artifact_config


def describe_model(model_dir: str | Path) -> dict[str, Any]:
    """Facts from config.json; counted now (and not saved) if an older artifact lacks them."""
    model_dir = Path(model_dir)
    config = read_artifact_config(model_dir)
    facts = dict(config.get("facts") or {})
    if "parameters" not in facts or "flops" not in facts:
        from kdas.engine.stages import model_facts
        from kdas.models import load as load_model

        loaded = load_model(str(model_dir))
        facts.update(model_facts(loaded.model, tuple(loaded.spec.input_size)))
    metrics_path = model_dir / METRICS_FILE
    metrics = None
    if metrics_path.is_file():
        import json

        metrics = json.loads(metrics_path.read_text())
    return {
        "path": str(model_dir),
        "stage": config.get("stage"),
        "model": config.get("model", {}),
        "facts": facts,
        "training": config.get("config"),
        "teacher": config.get("teacher"),
        "metrics": metrics,
        "weights_sha256": config.get("weights_sha256"),
    }


def _training_summary(training: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not training:
        return []
    rows = []
    data, optim, loss, run = (training.get(k, {}) for k in ("data", "optim", "loss", "run"))
    rows.append(("data", f"{data.get('layout')} at {data.get('root')}"))
    rows.append(("input", "x".join(map(str, data.get("size", [])))))
    rows.append(("batch", f"P×K = {data.get('p')}×{data.get('k')}"))
    rows.append(
        (
            "optimiser",
            f"{optim.get('optimizer')} lr {optim.get('lr')} wd {optim.get('weight_decay')} "
            f"{optim.get('schedule')}",
        )
    )
    rows.append(("epochs", str(run.get("epochs"))))
    rows.append(("objective", f"kd {loss.get('kd')} (T0 {loss.get('t0')}) + triplet"))
    rows.append(("precision", str(run.get("precision"))))
    return rows


def render_model_info(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    model, facts = info["model"], info["facts"]
    params = facts.get("parameters", {})
    table = Table(title=f"{info['stage'] or model.get('kind')} — {info['path']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    arch = model.get("teacher") or model.get("student") or {}
    table.add_row("kind", f"{model.get('kind')} {arch}")
    table.add_row("identities", str(model.get("num_classes")))
    table.add_row("parameters", f"{params.get('total', 0) / 1e6:.3f} M")
    table.add_row("  backbone", f"{params.get('backbone', 0) / 1e6:.3f} M")
    table.add_row("  head", f"{params.get('head', 0) / 1e6:.3f} M")
    size = "x".join(map(str, model.get("input_size", [])))
    table.add_row("FLOPs", f"{facts.get('flops', 0) / 1e9:.3f} G at {size}")
    if model.get("genotype"):
        g = model["genotype"]
        table.add_row("normal cell", " ".join(f"{op}@{i}" for op, i in g["normal"]))
        table.add_row("reduce cell", " ".join(f"{op}@{i}" for op, i in g["reduce"]))
    for key, value in _training_summary(info.get("training")):
        table.add_row(key, value)
    if info.get("teacher"):
        table.add_row("teacher", str(info["teacher"]))
    final = (info.get("metrics") or {}).get("final")
    if final:
        table.add_row("rank-1 / mAP", f"{final['rank1']:.4f} / {final['mAP']:.4f}")
    if "train_wall_time_s" in facts:
        table.add_row("train time", f"{facts['train_wall_time_s']:.0f} s")
    console.print(table)
