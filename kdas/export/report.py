"""bench.md and bench.png from a bench result (the dict `run_bench` writes as bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdas.utils.atomic import atomic_output_path, atomic_write_text


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _side(entry: dict[str, Any] | None) -> list[str]:
    if entry is None:
        return ["-", "-", "-"]
    return [entry["backend"], _num(entry["p50_ms"]), _num(entry["ms_per_image"])]


def _best_section(best: list[dict[str, Any]]) -> list[str]:
    """Each model on its own fastest backend, per batch size, and the ratio of the two."""
    if not best:
        return []
    lines = [
        "",
        "## Each model on its best backend",
        "",
        "Per batch size, the lowest measured p50 of each model over all its backends (any "
        "precision); latency ratio = student p50 / teacher p50.",
        "",
    ]
    return lines + _table(
        ["batch", "student backend", "student p50 ms", "student ms / image", "teacher backend",
         "teacher p50 ms", "teacher ms / image", "latency ratio", "throughput ratio"],
        [
            [str(b["batch"]), *_side(b.get("student")), *_side(b.get("teacher")),
             _num(b.get("latency"), ".3f"), _num(b.get("throughput"), ".3f")]
            for b in best
        ],
    )  # fmt: skip


def prediction_line(result: dict[str, Any]) -> str | None:
    """The student's predicted (latency table) against its measured latency, in one line."""
    p = result.get("latency_prediction")
    if not p:
        return None
    head = (
        f"student latency predicted by {p['table']} ({p['table_backend']}, batch {p['batch']}): "
        f"{p['predicted_ms']:.2f} ms"
    )
    if "measured_ms" not in p:
        return f"{head}; not compared: {p.get('note', 'no measurement')}"
    return f"{head}, measured {p['measured_ms']:.2f} ms ({p['error'] * 100:+.1f} %)"


def best_lines(result: dict[str, Any]) -> list[str]:
    """One line per batch size: each model's fastest backend and the student / teacher ratio."""
    lines = []
    for b in result.get("best") or []:
        sides = [
            f"{role} {b[role]['backend']} {b[role]['p50_ms']:.2f} ms"
            for role in ("student", "teacher")
            if role in b
        ]
        ratio = f" ({b['latency']:.3f}x)" if b.get("latency") is not None else ""
        lines.append(f"best at batch {b['batch']}: " + " vs ".join(sides) + ratio)
    return lines


def markdown(result: dict[str, Any]) -> str:
    machine, peak = result["machine"], result["peak_gflops"]
    threads = result["threads"]
    ort_threads = threads["onnxruntime"] or "default (all cores)"
    openvino = ""
    if machine.get("openvino"):
        ov_threads = threads.get("openvino") or "default (all cores)"
        openvino = f", openvino {machine['openvino']} (inference threads: {ov_threads})"
    height, width = result["size"]
    lines = [
        f"# kdas bench, {result['date']}",
        "",
        f"{machine['cpu']}, {machine['cores']} cores; torch {machine['torch']} "
        f"({threads['torch']} threads), onnxruntime {machine['onnxruntime']} "
        f"(intra-op threads: {ort_threads}){openvino}. Load average (1/5/15 min) before "
        f"{result['load_average']['before']}, after {result['load_average']['after']}.",
        "",
        f"Input {height}x{width}. Measured matmul peak (torch 2048^3): fp32 "
        f"{peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s. FLOP floor = FLOPs / "
        "fp32 peak; `x floor` = p50 latency / floor. Peak MB = rise of peak RSS over the RSS "
        "before the backend was loaded (weights + arenas + activations).",
        "",
        "## Models",
        "",
    ]
    models = result["models"]
    lines += _table(
        ["model", "parameters", "GFLOPs / image", "floor ms / image", "embedding"],
        [
            [
                role,
                f"{f['parameters'] / 1e6:.2f} M",
                f"{f['flops'] / 1e9:.3f}",
                f"{f['flops'] / (peak['fp32'] * 1e9) * 1e3:.2f}",
                str(f["embedding_dim"]),
            ]
            for role, f in models.items()
        ],
    )
    lines += ["", "## Latency and throughput", ""]
    ok = [r for r in result["results"] if r["status"] == "ok"]
    lines += _table(
        ["model", "backend", "batch", "p50 ms", "p90 ms", "p99 ms", "ms / image", "images/s",
         "x floor", "peak MB", "runs"],
        [
            [r["model"], r["backend"], str(r["batch"]), _num(r["p50_ms"]), _num(r["p90_ms"]),
             _num(r["p99_ms"]), _num(r["ms_per_image"]), _num(r["images_per_s"], ".1f"),
             _num(r["x_floor"]), _num(r["peak_mb"], ".0f"), str(r["runs"])]
            for r in ok
        ],
    )  # fmt: skip
    ratios = result.get("ratios") or {}
    if ratios:
        lines += [
            "",
            "## Student / teacher",
            "",
            f"Parameters {ratios['parameters']:.3f}x, FLOPs {ratios['flops']:.3f}x of the "
            "teacher's. Below 1 the student is faster (latency) / slower (throughput).",
            "",
        ]
        lines += _table(
            ["backend", "batch", "latency ratio (p50)", "throughput ratio"],
            [
                [p["backend"], str(p["batch"]), f"{p['latency']:.3f}", f"{p['throughput']:.3f}"]
                for p in ratios["per_backend"]
            ],
        )
    lines += _best_section(result.get("best") or [])
    predicted = prediction_line(result)
    if predicted:
        lines += ["", "## Predicted against measured", "", predicted + "."]
    if result.get("absent"):
        lines += ["", "## Absent backends", ""]
        lines += [f"- {backend}: {reason}" for backend, reason in result["absent"].items()]
    for name, profile in (result.get("profiles") or {}).items():
        lines += [
            "",
            f"## ONNX Runtime profile: {name}, batch {profile['batch']} "
            f"({profile['ms_per_run']:.2f} ms of kernels per run)",
            "",
        ]
        lines += _table(
            ["op", "ms / run", "share", "nodes"],
            [
                [o["op"], f"{o['ms_per_run']:.3f}", f"{o['share'] * 100:.1f}%", str(o["nodes"])]
                for o in profile["ops"][:15]
            ],
        )
    lines += ["", "## Backends", ""]
    lines += [f"- {name}: {note}" for name, note in result["backends"].items()]
    if result.get("calibration"):
        lines += [f"- INT8 calibration: {result['calibration']}"]
    return "\n".join(lines) + "\n"


def write_markdown(result: dict[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, markdown(result))


def write_plot(result: dict[str, Any], path: str | Path) -> Path:
    """One panel per batch size: ms per image of each backend, student and teacher bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = result["config"]["batches"]
    backends = list(result["backends"])
    roles = list(result["models"])
    ok = {
        (r["model"], r["backend"], r["batch"]): r["ms_per_image"]
        for r in result["results"]
        if r["status"] == "ok"
    }
    fig, axes = plt.subplots(
        1, len(batches), figsize=(4.2 * len(batches), 3.8), squeeze=False, sharey=False
    )
    width = 0.8 / max(1, len(roles))
    colors = {"student": "#2a7ab9", "teacher": "#d9822b"}
    for ax, batch in zip(axes[0], batches, strict=True):
        for i, role in enumerate(roles):
            xs, ys = [], []
            for j, backend in enumerate(backends):
                value = ok.get((role, backend, batch))
                if value is not None:
                    xs.append(j + (i - (len(roles) - 1) / 2) * width)
                    ys.append(value)
            ax.bar(xs, ys, width, label=role, color=colors.get(role))
        top = ax.get_ylim()[1]
        for j, backend in enumerate(backends):
            if backend in result.get("absent", {}):
                ax.text(j, 0.03 * top, "absent", ha="center", va="bottom", rotation=90, fontsize=9)
        ax.set_xticks(range(len(backends)), backends, rotation=30, ha="right")
        ax.set_title(f"batch {batch}")
        ax.set_ylabel("ms per image (p50)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(f"kdas bench {result['size'][0]}x{result['size'][1]}, {result['machine']['cpu']}")
    fig.tight_layout()
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def render_bench(result: dict[str, Any]) -> None:
    """The bench table on the terminal, and where the files went."""
    from rich.console import Console
    from rich.markdown import Markdown

    from kdas.files import BENCH_FILE, BENCH_PLOT, BENCH_TABLE

    target = Path(result["written_to"])
    Console().print(Markdown((target / BENCH_TABLE).read_text()))
    for line in best_lines(result):
        print(line)
    if prediction_line(result):
        print(prediction_line(result))
    ok = sum(r["status"] == "ok" for r in result["results"])
    print(f"{ok} measurements -> {target}/{BENCH_FILE}, {BENCH_TABLE}, {BENCH_PLOT}")
