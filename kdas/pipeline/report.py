"""`runs/NAME/report.html` (one self-contained page, pictures embedded) and the terminal summary.

Everything is read back from the artifacts the stages wrote, so the report shows what is on
disk, and a stage that did not run simply leaves its section out.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kdas import __version__
from kdas.errors import KdasError
from kdas.files import (
    ALPHAS_PLOT,
    BENCH_FILE,
    BENCH_PLOT,
    CELL_PLOTS,
    CMC_PLOT,
    CONFIG_FILE,
    GENOTYPE_FILE,
    LATENCY_DIR,
    LATENCY_PLOT,
    METRICS_FILE,
    PARETO_PLOT,
    PARITY_FILE,
    RANK_LIST_PLOT,
    SCHEDULE_PLOT,
    STABILITY_PLOT,
)
from kdas.pipeline.runner import StageContext, read_state
from kdas.utils.atomic import atomic_write_text

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
       margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
.muted { color: #666; font-size: 0.9em; } code { background: #f4f4f4; padding: 0 0.25em; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.warning { color: #9a6700; font-weight: bold; }
"""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if str(c).startswith('<') else html.escape(str(c))}</td>"
                         for c in row) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) else "–"


def _num(value: Any, fmt: str = ".2f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "–"


def _bench_row(bench: dict[str, Any] | None, role: str, backend: str, batch: int = 1) -> Any:
    for row in (bench or {}).get("results", []):
        if (row["model"], row["backend"], row["batch"], row["status"]) == (
            role,
            backend,
            batch,
            "ok",
        ):
            return row
    return None


def collect(ctx: StageContext) -> dict[str, Any]:
    """Every number the report and the terminal summary show, from the files on disk."""
    paths = ctx.paths
    configs = {k: _read_json(getattr(paths, k) / CONFIG_FILE) for k in ("teacher", "student")}
    return {
        "state": read_state(paths),
        "data": ctx.results.get("data"),
        "eval": {k: _read_json(paths.eval / k / METRICS_FILE) for k in ("teacher", "student")},
        "train": {k: _read_json(getattr(paths, k) / METRICS_FILE) for k in ("teacher", "student")},
        "configs": configs,
        "genotype": _read_json(paths.search / GENOTYPE_FILE),
        "bench": _read_json(paths.export / BENCH_FILE),
        "parity": _read_json(paths.export / PARITY_FILE),
        "index": ctx.results.get("index"),
        "export": ctx.results.get("export"),
    }


def _model_rows(facts: dict[str, Any]) -> list[list[Any]]:
    rows = []
    configs, evals, bench = facts["configs"], facts["eval"], facts["bench"]
    for role in ("teacher", "student"):
        cfg = configs.get(role) or {}
        metrics = (evals.get(role) or {}).get("metrics") or {}
        params = (cfg.get("facts") or {}).get("parameters", {})
        flops = (cfg.get("facts") or {}).get("flops")
        onnx = _bench_row(bench, role, "onnx")
        int8 = _bench_row(bench, role, "onnx-int8")
        ov_int8 = _bench_row(bench, role, "openvino-int8")
        rows.append(
            [
                role,
                _num(params.get("total", 0) / 1e6, ".2f"),
                _num((flops or 0) / 1e9, ".3f"),
                _pct(metrics.get("rank1")),
                _with_se(metrics, "mAP"),
                _pct(metrics.get("mINP")),
                _num(onnx["p50_ms"] if onnx else None),
                _num(int8["p50_ms"] if int8 else None),
                _num(ov_int8["p50_ms"] if ov_int8 else None),
            ]
        )
    return rows


MODEL_HEADERS = [
    "model", "params (M)", "GFLOPs", "rank-1 %", "mAP %", "mINP %", "ORT fp32 b1 ms",
    "ORT INT8 b1 ms", "OpenVINO INT8 b1 ms",
]  # fmt: skip


def _with_se(metrics: dict[str, Any], key: str) -> str:
    """A metric in %, with its bootstrap standard error over queries when it was measured."""
    se = metrics.get(f"{key}_se")
    return _pct(metrics.get(key)) + (f" ± {_pct(se)}" if se is not None else "")


def training_warnings(facts: dict[str, Any]) -> list[str]:
    """The warnings the teacher's and the student's training wrote (a run that did not learn,
    a schedule that cannot fit)."""
    return [
        f"{role}: {w}"
        for role in ("teacher", "student")
        for w in ((facts["train"].get(role) or {}).get("warnings") or [])
    ]


def _training_section(facts: dict[str, Any]) -> str:
    rows = []
    for role in ("teacher", "student"):
        train = facts["train"].get(role) or {}
        selected = train.get("selected") or {}
        val = selected.get("val") or {}
        if not train:
            continue
        rows.append(
            [
                role,
                train.get("epochs", ""),
                "" if selected.get("epoch") is None else selected["epoch"] + 1,
                html.escape(str(selected.get("by", ""))),
                _pct(val.get("rank1")),
                _pct(val.get("mAP")),
            ]
        )
    if not rows:
        return ""
    warnings = "".join(
        f"<li class='warning'>{html.escape(w)}</li>" for w in training_warnings(facts)
    )
    headers = ["model", "epochs", "weights of epoch", "chosen by", "val rank-1 %", "val mAP %"]
    return (
        "<h2>Training</h2><p>Epoch choices use the validation identities held out of the "
        "training split; the test split is evaluated once, on the weights written.</p>"
        + _table(headers, rows)
        + (f"<ul>{warnings}</ul>" if warnings else "")
    )


def _data_section(facts: dict[str, Any]) -> str:
    data = (facts.get("data") or {}).get("summary")
    if not data:
        return ""
    rows = [
        [name, s["ids"], s["images"], s["cameras"], s.get("distractors", 0)]
        for name, s in data["splits"].items()
    ]
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in data.get("warnings", []))
    return (
        f"<h2>Data set</h2><p>{html.escape(data['name'])} at <code>{html.escape(data['root'])}"
        f"</code></p>{_table(['split', 'ids', 'images', 'cameras', 'distractors'], rows)}"
        + (f"<ul>{warnings}</ul>" if warnings else "")
    )


def _search_section(paths: Any, genotype: dict[str, Any] | None) -> str:
    if genotype is None:
        return ""

    def cell(name: str) -> str:
        return " ".join(f"{op}←{i}" for op, i in genotype[name])

    return (
        "<h2>Search</h2>"
        "<p>Distillation schedule: the temperature T the paper lowers to 0, the temperature the "
        "softmax actually uses (never below 1) and the teacher's weight w.</p>"
        + _image(paths.search / SCHEDULE_PLOT, "T and w schedule")
        + "<p>softmax(α) of every edge over the search epochs.</p>"
        + _image(paths.search / ALPHAS_PLOT, "alpha over epochs")
        + "<p>Signs of DARTS collapse: α's entropy and the skip and pooling ops its argmax "
        "cells hold, per epoch.</p>"
        + _image(paths.search / STABILITY_PLOT, "search stability")
        + f"<p>Normal cell: <code>{html.escape(cell('normal'))}</code><br>"
        f"Reduction cell: <code>{html.escape(cell('reduce'))}</code></p>"
        + '<div class="grid">'
        + _image(paths.search / CELL_PLOTS["normal"], "normal cell")
        + _image(paths.search / CELL_PLOTS["reduce"], "reduction cell")
        + "</div>"
    )


def _deployment_section(paths: Any, bench: dict[str, Any] | None) -> str:
    if bench is None:
        return ""
    rows = [
        [
            r["model"], r["backend"], r["batch"], _num(r["p50_ms"]), _num(r["p90_ms"]),
            _num(r["p99_ms"]), _num(r["images_per_s"], ".0f"), _num(r["x_floor"], ".2f"),
            _num(r.get("peak_mb"), ".0f"),
        ]
        for r in bench["results"]
        if r["status"] == "ok"
    ]  # fmt: skip
    absent = "".join(
        f"<li><b>{html.escape(b)}</b>: {html.escape(reason)}</li>"
        for b, reason in bench.get("absent", {}).items()
    )
    ratios = bench.get("ratios") or {}
    ratio_rows = [
        [r["backend"], r["batch"], _num(r["latency"]), _num(r["throughput"])]
        for r in ratios.get("per_backend", [])
    ]
    machine = bench.get("machine", {})
    return (
        "<h2>Deployment: latency side by side</h2>"
        f"<p class='muted'>{html.escape(str(machine.get('cpu', '')))}, "
        f"{machine.get('cores')} cores, input {bench['size'][0]}×{bench['size'][1]}, "
        f"fp32 matmul peak {_num(bench['peak_gflops']['fp32'], '.0f')} GFLOP/s (the FLOP floor "
        "of a model is its FLOPs at this peak).</p>"
        + _image(paths.export / BENCH_PLOT, "latency per backend")
        + _table(
            [
                "model",
                "backend",
                "batch",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "img/s",
                "× floor",
                "peak MB",
            ],
            rows,
        )
        + (
            f"<p>Student ÷ teacher: parameters {_num(ratios.get('parameters'))}, FLOPs "
            f"{_num(ratios.get('flops'))}.</p>"
            + _table(["backend", "batch", "latency ratio", "throughput ratio"], ratio_rows)
            if ratios
            else ""
        )
        + (f"<p>Backends not measured here:</p><ul>{absent}</ul>" if absent else "")
    )


def _hardware_section(ctx: StageContext, bench: dict[str, Any] | None) -> str:
    """The latency budget, predicted against measured, the search's latency curve and the
    accuracy-against-latency plot of this run and `[report] pareto_runs`."""
    from kdas.export.report import prediction_line
    from kdas.pipeline.pareto import write_pareto

    paths, lat = ctx.paths, ctx.cfg.search.latency
    if not lat.target:
        return ""
    parts = [
        "<h2>Hardware-aware search</h2>",
        f"<p>Budget <code>{html.escape(lat.target)}</code>, weight {lat.weight}, table "
        f"<code>{html.escape(str((ctx.results.get('latency') or {}).get('table') or lat.table))}"
        "</code>.</p>",
    ]
    line = prediction_line(bench or {})
    if line:
        parts.append(f"<p>{html.escape(line)}</p>")
    parts.append(_image(paths.search / LATENCY_PLOT, "predicted latency during the search"))
    runs = [paths.root] + [paths.root.parent / name for name in ctx.cfg.report.pareto_runs]
    try:
        write_pareto(runs, paths.root / LATENCY_DIR)
    except KdasError as exc:
        note = html.escape(str(exc))
        parts.append(f"<p class='muted'>No accuracy-against-latency plot: {note}</p>")
    else:
        parts.append(_image(paths.root / LATENCY_DIR / PARETO_PLOT, "mAP against latency"))
    return "".join(parts)


def _parity_section(parity: dict[str, Any] | None) -> str:
    if not parity:
        return ""
    rows = []
    for name, r in parity.items():
        status = (
            '<span class="pass">pass</span>' if r["passed"] else '<span class="fail">FAIL</span>'
        )
        torch_map = (r.get("torch") or {}).get("mAP")
        exported_map = (r.get("exported_metrics") or {}).get("mAP")
        backend = r.get("backend", "")
        rows.append(
            [
                name, f"{backend} {r['device']}" if r.get("device") else backend, r["precision"],
                status, f"{r['max_abs_diff']:.2e}", f"{r['min_cosine']:.5f}", _pct(torch_map),
                _pct(exported_map), _pct(r.get("top10_overlap")),
            ]
        )  # fmt: skip
    return "<h2>Parity of every export</h2>" + _table(
        ["file", "backend", "precision", "result", "max |Δ|", "min cosine", "mAP torch %",
         "mAP export %", "top-10 overlap %"],
        rows,
    )  # fmt: skip


def _export_section(paths: Any, export: dict[str, Any] | None) -> str:
    """Each exported file with its size on disk (an IR's .xml and the .bin beside it), and
    each one the stage skipped with the reason."""
    if not export:
        return ""
    rows = []
    for name in export.get("files", {}):
        path = paths.export / name
        parts = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
        sizes = [q.stat().st_size for q in parts if q.is_file()]
        shown = " + ".join(q.name for q in parts)
        rows.append([shown, _num(sum(sizes) / 2**20, ".2f") if sizes else "missing"])
    skipped = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(reason)}</li>"
        for name, reason in export.get("skipped", {}).items()
    )
    return (
        "<h2>Exported files</h2>"
        + _table(["file", "MB"], rows)
        + (f"<p>Not exported here:</p><ul>{skipped}</ul>" if skipped else "")
    )


def _index_section(index: dict[str, Any] | None) -> str:
    if not index:
        return ""
    m = index["metrics"]
    rows = [
        ["model", index["model"]],
        ["index type", index["index_type"]],
        ["gallery images", index["num_gallery"]],
        ["rank-1 / mAP %", f"{_pct(m['rank1'])} / {_pct(m['mAP'])}"],
        ["embedding (images/s)", _num(index["embed_images_per_s"], ".0f")],
        ["search, batched (queries/s)", _num(index["queries_per_s_batched"], ".0f")],
        ["search, one query p50 (ms)", _num(index["single_query_ms_p50"])],
        ["build (s)", _num(index["build_seconds"], ".1f")],
    ]
    return "<h2>Retrieval runtime (torch-free)</h2>" + _table(["measure", "value"], rows)


def _timing_section(state: dict[str, Any]) -> str:
    done = {name: record for name, record in state.items() if name != "report"}
    rows = [
        [name, record.get("status", ""), _num(record.get("seconds"), ".0f")]
        for name, record in done.items()
    ]
    total = sum(r.get("seconds", 0) or 0 for r in done.values())
    return (
        "<h2>Stages</h2>"
        + _table(["stage", "status", "seconds"], rows)
        + f"<p class='muted'>total {total / 60:.1f} min of stage time (skipped stages count the "
        "time of the run that made them).</p>"
    )


def write_report(ctx: StageContext) -> Path:
    facts = collect(ctx)
    paths = ctx.paths
    teacher_eval = facts["eval"].get("teacher") or {}
    student_eval = facts["eval"].get("student") or {}
    rank_lists = "".join(
        f"<h3>{role}</h3>" + _image(paths.eval / role / RANK_LIST_PLOT, f"{role} rank list")
        for role in ("student", "teacher")
        if (paths.eval / role / RANK_LIST_PLOT).is_file()
    )
    body = [
        f"<h1>kdas run <code>{html.escape(ctx.cfg.name)}</code></h1>",
        f"<p class='muted'>kdas {__version__}, written "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}; every number below is read from "
        f"the run folder <code>{html.escape(str(paths.root))}</code>.</p>",
        "<h2>Teacher and student</h2>",
        _table(MODEL_HEADERS, _model_rows(facts)),
        _training_section(facts),
        _data_section(facts),
        _search_section(paths, facts["genotype"]),
        "<h2>Retrieval quality</h2>" if teacher_eval or student_eval else "",
        _image(paths.eval / CMC_PLOT, "CMC curves"),
        rank_lists,
        _export_section(paths, facts["export"]),
        _deployment_section(paths, facts["bench"]),
        _hardware_section(ctx, facts["bench"]),
        _parity_section(facts["parity"]),
        _index_section(facts["index"]),
        _timing_section(facts["state"]),
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>kdas — {html.escape(ctx.cfg.name)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(part for part in body if part)
        + "</body></html>\n"
    )
    return atomic_write_text(paths.report, page)


def print_summary(ctx: StageContext, console: Console | None = None) -> None:
    """The short table a user reads at the end of `kdas pipeline`."""
    console = console or Console()
    facts = collect(ctx)
    table = Table(title=f"kdas run {ctx.cfg.name}")
    for header in MODEL_HEADERS:
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in _model_rows(facts):
        table.add_row(*map(str, row))
    console.print(table)
    for warning in training_warnings(facts):
        console.print(f"[bold yellow]{warning}[/]")
    parity = facts.get("parity") or {}
    if parity:
        verdicts = ", ".join(
            f"{name} {'pass' if r['passed'] else 'FAIL'}" for name, r in parity.items()
        )
        console.print(f"parity: {verdicts}")
    index = facts.get("index")
    if index:
        m = index["metrics"]
        console.print(
            f"runtime index ({index['index_type']}, {index['model']}): rank-1 {_pct(m['rank1'])}% "
            f"mAP {_pct(m['mAP'])}%, {index['queries_per_s_batched']:.0f} queries/s batched"
        )
    console.print(f"report: {ctx.paths.report}")
