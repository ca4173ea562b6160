"""The pipeline's stages: each one a call of the library function the matching CLI uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdas.errors import KdasError
from kdas.files import (
    CMC_PLOT,
    GENOTYPE_FILE,
    IR_SUFFIXES,
    ONNX_SUFFIXES,
    PARITY_FILE,
    SYNTH_CONFIG_FILE,
)
from kdas.pipeline.runner import StageContext
from kdas.progress import console


def _with_data(section: Any, ctx: StageContext) -> Any:
    """A stage config with the pipeline's data set filled in."""
    from kdas.engine.config import with_data_set

    return with_data_set(section, ctx.cfg.data)


def data_stage(ctx: StageContext) -> dict[str, Any]:
    from pathlib import Path

    from kdas.data.inspect import summarize
    from kdas.data.layouts import load_dataset
    from kdas.data.synthetic import synthesize

    data = ctx.cfg.data
    root = Path(data.root)
    if data.synthesize is not None:
        made = root / SYNTH_CONFIG_FILE
        if ctx.force or not made.is_file():
            if data.synthesize.layout != data.layout:
                raise KdasError(
                    f"data.synthesize.layout {data.synthesize.layout!r} differs from data.layout "
                    f"{data.layout!r}"
                )
            console.log(f"synthesising {data.synthesize.ids} identities into {root}")
            synthesize(root, data.synthesize, progress=True)
    elif not root.exists():
        raise KdasError(f"data set folder {root} not found (set data.root, or data.synthesize)")
    splits = load_dataset(str(root), data.layout, **data.options)
    return {"summary": summarize(splits), "root": str(root), "layout": data.layout}


def _resume(ctx: StageContext, stage_dir: Path) -> bool:
    """`kdas pipeline --resume` continues the stages that have a checkpoint and starts the
    others; a single stage's `--resume` with nothing to resume is an error instead."""
    from kdas.engine.runner import has_checkpoint

    return ctx.resume and has_checkpoint(stage_dir)


def teacher_stage(ctx: StageContext) -> dict[str, Any]:
    from kdas.engine.stages import train_teacher

    result = train_teacher(
        _with_data(ctx.cfg.teacher, ctx),
        ctx.paths.teacher,
        resume=_resume(ctx, ctx.paths.teacher),
        force=ctx.force,
    )
    return {"metrics": result.metrics, "seconds": result.wall_time_s}


def search_stage(ctx: StageContext) -> dict[str, Any]:
    from kdas.models.genotype import genotype_to_dict
    from kdas.search.loop import run_search

    cfg = _with_data(ctx.cfg.search, ctx)
    if cfg.loss.uses_teacher:
        cfg.teacher = str(ctx.paths.teacher)
    if cfg.latency.target and not cfg.latency.table:
        cfg.latency.table = (ctx.results.get("latency") or {}).get("table") or ""
    result = run_search(
        cfg, ctx.paths.search, resume=_resume(ctx, ctx.paths.search), force=ctx.force
    )
    return {"genotype": genotype_to_dict(result.genotype), "seconds": result.wall_time_s}


def student_stage(ctx: StageContext) -> dict[str, Any]:
    from kdas.engine.stages import train_student

    cfg = _with_data(ctx.cfg.student, ctx)
    cfg.genotype = str(ctx.paths.search / GENOTYPE_FILE)
    if cfg.loss.uses_teacher:
        cfg.teacher = str(ctx.paths.teacher)
    result = train_student(
        cfg, ctx.paths.student, resume=_resume(ctx, ctx.paths.student), force=ctx.force
    )
    return {"metrics": result.metrics, "seconds": result.wall_time_s}


def evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    """Teacher and student on the same split, side by side, with their CMC curves."""
    import numpy as np

    from kdas.engine.evaluate import evaluate_artifact
    from kdas.evaluation.plots import plot_cmc

    data = ctx.cfg.data
    reports = {}
    for kind, folder in (("teacher", ctx.paths.teacher), ("student", ctx.paths.student)):
        reports[kind] = evaluate_artifact(
            folder,
            data.root,
            data.layout,
            out_dir=ctx.paths.eval / kind,
            options=dict(data.options),
            rerank=ctx.cfg.evaluate.rerank,
            flip=ctx.cfg.evaluate.flip,
        )
    plot_cmc({kind: np.array(r["cmc"]) for kind, r in reports.items()}, ctx.paths.eval / CMC_PLOT)
    return {kind: r["metrics"] for kind, r in reports.items()}


def export_stage(ctx: StageContext) -> dict[str, Any]:
    """Student and teacher to ONNX; the student also to INT8 / FP16 / TensorRT and both to
    OpenVINO IRs as configured."""
    from kdas.errors import BackendUnavailable
    from kdas.export.api import export_model

    e, data, paths = ctx.cfg.export, ctx.cfg.data, ctx.paths
    files: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for kind, folder in (("student", paths.student), ("teacher", paths.teacher)):
        target = paths.export / f"{kind}{ONNX_SUFFIXES['fp32']}"
        files[target.name] = str(export_model(folder, "onnx", out=target, opset=e.opset))
    calibration = {
        "calib_data": data.root,
        "calib_layout": data.layout,
        "calib_images": e.calib_images,
        "calib_options": dict(data.options),
    }
    if e.int8:
        target = paths.export / f"student{ONNX_SUFFIXES['int8']}"
        files[target.name] = str(
            export_model(paths.student, "onnx", out=target, int8=True, opset=e.opset, **calibration)
        )
    if e.fp16:
        target = paths.export / f"student{ONNX_SUFFIXES['fp16']}"
        files[target.name] = str(
            export_model(paths.student, "onnx", out=target, fp16=True, opset=e.opset)
        )
    if e.tensorrt != "off":
        suffix = "" if e.tensorrt == "fp32" else f".{e.tensorrt}"
        target = paths.export / f"student{suffix}.engine"
        try:
            extra = calibration if e.tensorrt == "int8" else {}
            files[target.name] = str(
                export_model(paths.student, "tensorrt", out=target, precision=e.tensorrt, **extra)
            )
        except BackendUnavailable as exc:
            skipped[target.name] = str(exc)
            console.log(f"TensorRT skipped: {exc}")
    if e.openvino:
        _export_openvino(ctx, calibration, files, skipped)
    return {"files": files, "skipped": skipped}


def _export_openvino(
    ctx: StageContext, calibration: dict[str, Any], files: dict[str, str], skipped: dict[str, str]
) -> None:
    """Student and teacher IRs in each configured precision; bf16 is skipped with one log line
    where the CPU lacks it (the other IRs still deploy), any other failure stops the stage."""
    from kdas.errors import BackendUnavailable
    from kdas.export.api import export_model
    from kdas.runtime.openvino_model import check_precision_supported

    e, paths = ctx.cfg.export, ctx.paths
    precisions = list(dict.fromkeys(e.openvino_precisions))
    if "bf16" in precisions:
        try:
            check_precision_supported("bf16")
        except BackendUnavailable as exc:
            precisions.remove("bf16")
            for kind in ("student", "teacher"):
                skipped[f"{kind}{IR_SUFFIXES['bf16']}"] = str(exc)
            console.log(f"OpenVINO bf16 skipped: {exc}")
    for kind, folder in (("student", paths.student), ("teacher", paths.teacher)):
        onnx = files[f"{kind}{ONNX_SUFFIXES['fp32']}"]  # written above: no second export
        for precision in precisions:
            target = paths.export / f"{kind}{IR_SUFFIXES[precision]}"
            extra = calibration if precision == "int8" else {}
            files[target.name] = str(
                export_model(
                    folder, "openvino", out=target, precision=precision, from_onnx=onnx, **extra
                )
            )


def parity_stage(ctx: StageContext) -> dict[str, Any]:
    """Every export against its PyTorch model; any failed threshold fails the stage."""
    from kdas.export.parity import check_parity

    data, paths = ctx.cfg.data, ctx.paths
    files = ctx.results.get("export", {}).get("files", {})
    if not files:
        raise KdasError("no exported models to check: run the export stage first")
    reports = {}
    cache: dict[tuple, Any] = {}  # PyTorch runs once per model, not once per exported file
    for name, path in files.items():
        folder = paths.teacher if name.startswith("teacher") else paths.student
        report = check_parity(
            folder,
            path,
            data.root,
            data.layout,
            options=dict(data.options),
            num_images=ctx.cfg.parity.num_images,
            out=paths.export / PARITY_FILE,
            reference_cache=cache,
        )
        reports[name] = {
            k: report[k]
            for k in (
                "precision", "backend", "device", "passed", "max_abs_diff", "min_cosine",
                "map_drop", "checks",
            )
        }  # fmt: skip
        reports[name]["mAP"] = {
            "torch": (report["torch"] or {}).get("mAP"),
            "exported": (report["exported_metrics"] or {}).get("mAP"),
        }
        reports[name]["top10_overlap"] = report.get("top10_overlap")
    failed = [name for name, r in reports.items() if not r["passed"]]
    if failed:
        details = "; ".join(
            f"{name}: " + ", ".join(c["name"] for c in reports[name]["checks"] if not c["passed"])
            for name in failed
        )
        raise KdasError(f"parity failed ({details}); see {paths.export / PARITY_FILE}")
    return reports


def _bench_files(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The export stage's files by model and bench backend (student.int8.xml -> openvino-int8),
    so the bench times the files that were checked for parity instead of exporting its own."""
    from kdas.export.backends import OPENVINO_BACKENDS

    by_name = {"onnx": ONNX_SUFFIXES["fp32"], "onnx-int8": ONNX_SUFFIXES["int8"]}
    by_name |= {backend: IR_SUFFIXES[p] for backend, p in OPENVINO_BACKENDS.items()}
    exported: dict[str, dict[str, Any]] = {"student": {}, "teacher": {}}
    for role, given in exported.items():
        for backend, suffix in by_name.items():
            if f"{role}{suffix}" in files:
                given[backend] = files[f"{role}{suffix}"]
    return exported


def bench_stage(ctx: StageContext) -> dict[str, Any]:
    """`kdas bench` on the exported files; with `[export] openvino` the IRs' backends too
    (bf16 where it was skipped is listed as absent, with the reason)."""
    from kdas.export.backends import OPENVINO_BACKENDS
    from kdas.export.bench import BenchConfig, run_bench

    b, data, paths, e = ctx.cfg.bench, ctx.cfg.data, ctx.paths, ctx.cfg.export
    files = ctx.results.get("export", {}).get("files", {})
    exported = _bench_files(files)
    backends = list(b.backends)
    if e.openvino:
        wanted = set(e.openvino_precisions)
        backends += [k for k, p in OPENVINO_BACKENDS.items() if p in wanted and k not in backends]
    table = (ctx.results.get("latency") or {}).get("table")
    config = BenchConfig(
        latency_table=table,
        allow_foreign_lut=ctx.cfg.search.latency.allow_foreign,
        backends=tuple(backends),
        batches=tuple(b.batch),
        repeats=b.repeats,
        threads=b.threads,
        calib_data=data.root,
        calib_layout=data.layout,
        calib_images=min(ctx.cfg.export.calib_images, 64),
    )
    result = run_bench(paths.student, paths.teacher, paths.export, config, exported=exported)
    return {"ratios": result["ratios"], "absent": result["absent"], "size": result["size"]}


def index_stage(ctx: StageContext) -> dict[str, Any]:
    """Index the gallery with the exported student and answer the query split through it."""
    import time

    import numpy as np

    from kdas.data.layouts import load_dataset
    from kdas.runtime.embedder import Embedder
    from kdas.runtime.pipeline import build_index, evaluate_index

    data, paths = ctx.cfg.data, ctx.paths
    model = paths.export / f"student{ONNX_SUFFIXES[ctx.cfg.index.model]}"
    if not model.is_file():
        raise KdasError(f"{model} is missing: run the export stage first")
    splits = load_dataset(data.root, data.layout, **data.options)
    started = time.perf_counter()
    index = build_index(model, splits.gallery, paths.index, index_type=ctx.cfg.index.type)
    build_s = time.perf_counter() - started
    embedder = Embedder(model)
    evaluation = evaluate_index(index, embedder, splits.query)
    queries = embedder.embed_images([r.path for r in splits.query])
    started = time.perf_counter()
    index.search_ids(queries, 10)
    batch_s = time.perf_counter() - started
    single = []
    for row in queries[: min(50, len(queries))]:
        t0 = time.perf_counter()
        index.search_ids(row[None], 10)
        single.append(time.perf_counter() - t0)
    return {
        "model": model.name,
        "index_type": ctx.cfg.index.type,
        "num_gallery": len(splits.gallery),
        "build_seconds": build_s,
        "metrics": evaluation["metrics"],
        "embed_images_per_s": len(splits.query) / max(evaluation["embed_seconds"], 1e-9),
        "queries_per_s_batched": len(queries) / max(batch_s, 1e-9),
        "single_query_ms_p50": float(np.median(single) * 1000),
    }


def report_stage(ctx: StageContext) -> dict[str, Any]:
    from kdas.pipeline.report import print_summary, write_report

    path = write_report(ctx)
    print_summary(ctx)
    return {"report": str(path)}


def _latency_stage(ctx: StageContext) -> dict[str, Any]:
    from kdas.pipeline.latency import latency_stage

    return latency_stage(ctx)


STAGE_FUNCTIONS = {
    "latency": _latency_stage,
    "data": data_stage,
    "teacher": teacher_stage,
    "search": search_stage,
    "student": student_stage,
    "evaluate": evaluate_stage,
    "export": export_stage,
    "parity": parity_stage,
    "bench": bench_stage,
    "index": index_stage,
    "report": report_stage,
}
