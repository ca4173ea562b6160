"""What a researcher looks at after a search: α over epochs, the T / w schedule, the cells."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from kdas.files import ALPHAS_PLOT, CELL_PLOTS, LATENCY_PLOT, SCHEDULE_PLOT, STABILITY_PLOT
from kdas.utils.atomic import atomic_output_path


def _save(fig: Any, path: Path) -> None:
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _edge_names(steps: int) -> list[str]:
    names = []
    for node in range(steps):
        for src in range(node + 2):
            label = {0: "c_{k-2}", 1: "c_{k-1}"}.get(src, str(src - 2))
            names.append(f"{label}→{node}")
    return names


def plot_alphas(history: list[dict[str, Any]], primitives: list[str], out: Path) -> None:
    """One panel per edge (normal cells on top, reduction cells below): softmax(α) per op."""
    if not history:
        return
    normal = np.array([h["alphas"]["normal"] for h in history])  # epochs × edges × ops
    reduce = np.array([h["alphas"]["reduce"] for h in history])
    epochs = [h["epoch"] + 1 for h in history]
    edges = normal.shape[1]
    steps = int((np.sqrt(9 + 8 * edges) - 3) / 2)
    names = _edge_names(steps)
    cols = 7
    rows_per_cell = -(-edges // cols)
    fig, axes = plt.subplots(
        2 * rows_per_cell,
        cols,
        figsize=(2.6 * cols, 2.0 * 2 * rows_per_cell),
        sharex=True,
        sharey=True,
    )
    colors = plt.get_cmap("tab10").colors
    for cell_index, (cell, weights) in enumerate((("normal", normal), ("reduce", reduce))):
        for e in range(rows_per_cell * cols):
            ax = axes[cell_index * rows_per_cell + e // cols, e % cols]
            if e >= edges:
                ax.axis("off")
                continue
            for o, op in enumerate(primitives):
                ax.plot(epochs, weights[:, e, o], color=colors[o % 10], label=op, lw=1.4)
            ax.set_title(f"{cell} {names[e]}", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(primitives), fontsize=8)
    fig.suptitle("softmax(α) per edge over search epochs")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    _save(fig, out)


def plot_schedule(history: list[dict[str, Any]], out: Path) -> None:
    """T_e (scheduled), T_kd (what the softmax uses) and the teacher weight w_e per epoch."""
    if not history:
        return
    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, [h["temperature"] for h in history], label="T (schedule)", lw=2)
    ax.plot(epochs, [h["kd_temperature"] for h in history], label="T used by the softmax", ls="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("temperature")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["kd_weight"] for h in history], color="tab:red", label="teacher weight w")
    ax2.set_ylabel("w", color="tab:red")
    ax2.set_ylim(-0.05, 1.05)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=8, loc="center right")
    ax.set_title("distillation schedule")
    fig.tight_layout()
    _save(fig, out)


def plot_latency(history: list[dict[str, Any]], out: Path) -> None:
    """E[lat] under α and the derived genotype's predicted latency per epoch, with the budget;
    nothing for a search without a latency term."""
    rows = [(h["epoch"] + 1, h["latency"]) for h in history if h.get("latency")]
    if not rows:
        return
    epochs = [e for e, _ in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, [r["expected_ms"] for _, r in rows], lw=2, label="E[latency] under α")
    ax.plot(
        epochs, [r["predicted_ms"] for _, r in rows], marker="o", ls="--",
        label="derived genotype (table)",
    )  # fmt: skip
    ax.axhline(rows[-1][1]["target_ms"], color="tab:red", lw=1, label="target")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"ms ({rows[-1][1].get('backend', '')})")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("predicted latency during the search")
    fig.tight_layout()
    _save(fig, out)


def plot_stability(history: list[dict[str, Any]], out: Path) -> None:
    """DARTS collapse at a glance: α entropy falling while the skip count climbs."""
    rows = [h for h in history if "alpha_entropy" in h]
    if not rows:
        return
    epochs = [h["epoch"] + 1 for h in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for cell in ("normal", "reduce"):
        ax.plot(epochs, [h["alpha_entropy"][cell] for h in rows], marker="o", label=cell)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("entropy of softmax(α) / log(#ops)")
    ax.legend(fontsize=8)
    ax.set_title("how decided α is (1 = uniform)")
    for cell, style in (("normal", "-"), ("reduce", ":")):
        for op, color in (("skip", "tab:red"), ("pool", "tab:blue")):
            counts = [h["alpha_op_count"][cell][op] for h in rows]
            ax2.plot(epochs, counts, ls=style, marker=".", color=color, label=f"{op}, {cell}")
    stops = [h["epoch"] + 1 for h in rows if h.get("stopped")]
    for stop in stops:
        ax2.axvline(stop, color="grey", lw=1, ls="--", label="early stop")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("ops in the α-argmax cell")
    ax2.legend(fontsize=7, ncol=2)
    ax2.set_title("parameter-free ops chosen")
    fig.tight_layout()
    _save(fig, out)


def _cell_edges(pairs: list[tuple[str, int]], steps: int) -> list[tuple[str, str, str]]:
    names = {0: "c_{k-2}", 1: "c_{k-1}"}
    edges = []
    for i, (op, src) in enumerate(pairs):
        node = i // 2
        edges.append((names.get(src, str(src - 2)), str(node), op))
    return edges


def _cell_with_graphviz(edges: list[tuple[str, str, str]], concat: list[str], out: Path) -> bool:
    dot = shutil.which("dot")
    if dot is None:
        return False
    lines = ["digraph cell {", "rankdir=LR;", 'node [style=filled, fontname="helvetica"];']
    for name in ("c_{k-2}", "c_{k-1}"):
        lines.append(f'"{name}" [fillcolor=darkseagreen2, shape=box];')
    for src, dst, op in edges:
        lines.append(f'"{src}" -> "{dst}" [label="{op}", fontsize=10];')
    lines.append('"c_{k}" [fillcolor=palegoldenrod, shape=box];')
    for node in concat:
        lines.append(f'"{node}" -> "c_{{k}}";')
    lines.append("}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cell.dot"
        src.write_text("\n".join(lines))
        with atomic_output_path(out) as target:
            result = subprocess.run(
                [dot, "-Tpng", str(src), "-o", str(target)], capture_output=True, check=False
            )
            if result.returncode != 0:
                raise RuntimeError(result.stderr.decode(errors="replace"))
    return True


def plot_cell(pairs: list[tuple[str, int]], concat: list[int], title: str, out: Path) -> None:
    """The derived cell as a graph: graphviz when `dot` is installed, matplotlib otherwise."""
    steps = len(pairs) // 2
    edges = _cell_edges(pairs, steps)
    concat_names = [str(i - 2) for i in concat]
    try:
        if _cell_with_graphviz(edges, concat_names, out):
            return
    except RuntimeError:
        pass
    positions = {"c_{k-2}": (0.0, 0.8), "c_{k-1}": (0.0, 0.2), "c_{k}": (steps + 1.0, 0.5)}
    for node in range(steps):
        positions[str(node)] = (node + 1.0, 0.9 - 0.8 * node / max(steps - 1, 1))
    fig, ax = plt.subplots(figsize=(2.2 * (steps + 2), 3.6))
    for src, dst, op in edges:
        (x0, y0), (x1, y1) = positions[src], positions[dst]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "0.35", "shrinkA": 16, "shrinkB": 16},
        )
        ax.text(
            (x0 + x1) / 2,
            (y0 + y1) / 2,
            op,
            fontsize=7,
            ha="center",
            va="center",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    for node in concat_names:
        (x0, y0), (x1, y1) = positions[node], positions["c_{k}"]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "0.7", "shrinkA": 16, "shrinkB": 16},
        )
    for name, (x, y) in positions.items():
        color = (
            "#cfe8cf" if name.startswith("c_{k-") else "#f2e6a8" if name == "c_{k}" else "#cfe0f2"
        )
        label = f"${name}$" if name.startswith("c_") else name
        ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.4", "fc": color, "ec": "0.4"},
        )
    ax.set_xlim(-0.5, steps + 1.5)
    ax.set_ylim(0.0, 1.05)
    ax.axis("off")
    ax.set_title(title)
    _save(fig, out)


def write_search_pictures(history: list[dict[str, Any]], genotype: Any, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    primitives = list(history[-1]["genotype"].get("primitives", [])) if history else []
    if primitives:
        plot_alphas(history, primitives, out_dir / ALPHAS_PLOT)
    plot_schedule(history, out_dir / SCHEDULE_PLOT)
    plot_latency(history, out_dir / LATENCY_PLOT)
    plot_stability(history, out_dir / STABILITY_PLOT)
    plot_cell(
        list(genotype.normal),
        list(genotype.normal_concat),
        "normal cell",
        out_dir / CELL_PLOTS["normal"],
    )
    plot_cell(
        list(genotype.reduce),
        list(genotype.reduce_concat),
        "reduction cell",
        out_dir / CELL_PLOTS["reduce"],
    )
