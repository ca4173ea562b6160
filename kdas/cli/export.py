"""`kdas export`, `kdas parity`, `kdas bench`: deployable files, their checks, their speed."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common


def export_command(
    model_dir: Path = typer.Argument(..., help="A model folder (teacher or student)."),
    to: str = typer.Option("onnx", "--to", help="onnx or tensorrt."),
    out: Path = typer.Option(
        None, "--out", help="Output file (default MODEL_DIR/../export/<kind>[.fp16|.int8].onnx)."
    ),
    opset: int = typer.Option(18, "--opset", help="ONNX opset."),
    exporter: str = typer.Option("auto", "--exporter", help="auto, dynamo or legacy."),
    fp16: bool = typer.Option(False, "--fp16", help="ONNX with float16 weights (for GPUs)."),
    int8: bool = typer.Option(
        False, "--int8", help="ONNX INT8 (QDQ) for CPUs; needs --calib-data."
    ),
    precision: str = typer.Option("fp32", "--precision", help="TensorRT: fp32, fp16 or int8."),
    calib_data: Path = typer.Option(
        None, "--calib-data", help="Data set root for INT8 calibration."
    ),
    calib_layout: str = typer.Option("market1501", "--calib-layout", help=common.LAYOUT_HELP),
    calib_images: int = typer.Option(
        256, "--calib-images", help="Training images to calibrate on."
    ),
    calib_method: str = typer.Option(
        "minmax", "--calib-method", help="minmax, entropy, percentile."
    ),
    max_batch: int = typer.Option(
        32, "--max-batch", help="TensorRT: largest batch of the profile."
    ),
    size: str = typer.Option(None, "--size", help="Input HxW (default: the training size)."),
) -> None:
    """Export a model folder to ONNX (fp32, fp16, int8) or a TensorRT engine."""
    from kdas.errors import KdasError
    from kdas.export.api import export_model

    if max_batch < 1:
        raise KdasError(f"--max-batch must be at least 1, got {max_batch}")
    path = export_model(
        model_dir,
        to=to,
        out=out,
        opset=opset,
        exporter=exporter,
        fp16=fp16,
        int8=int8,
        precision=precision,
        calib_data=calib_data,
        calib_layout=calib_layout,
        calib_images=calib_images,
        calib_method=calib_method,
        batch_sizes=(1, min(8, max_batch), max_batch),
        input_size=common.parse_size(size),
    )
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")


def parity_command(
    model_dir: Path = typer.Argument(..., help="The model folder that was exported."),
    exported: Path = typer.Argument(..., help="The exported .onnx file or TensorRT .engine."),
    data: str = typer.Option(..., "--data", help=common.DATA_HELP),
    layout: str = typer.Option("market1501", "--layout", help=common.LAYOUT_HELP),
    num_images: int = typer.Option(
        None,
        "--num-images",
        help="Use N query and N gallery images, spread evenly over each split (default: all).",
    ),
    out: Path = typer.Option(None, "--out", help="Report file (default: parity.json beside it)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    providers: str = typer.Option("auto", "--providers", help="ONNX Runtime: auto, cpu, cuda."),
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    distractors: bool = common.DistractorsOption,
) -> None:
    """Compare an exported model with its PyTorch model; exit code 1 when a threshold fails."""
    from kdas.errors import KdasError
    from kdas.export.parity import check_parity, render_parity

    report = check_parity(
        model_dir,
        exported,
        data,
        layout,
        options=common.layout_options(variant, merge_val, distractors),
        num_images=num_images,
        out=out,
        batch_size=batch_size,
        providers=providers,
    )
    render_parity(report)
    failed = [c for c in report["checks"] if not c["passed"]]
    if failed:
        raise KdasError(
            "parity failed: "
            + "; ".join(
                f"{c['name']} = {c['value']} (needs {c['op']} {c['limit']})" for c in failed
            )
        )


def bench_command(
    student: Path = typer.Option(None, "--student", help="Student model folder."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher model folder."),
    backends: str = typer.Option(
        "torch,torch-bf16,onnx,onnx-int8,tensorrt", "--backends", help="Comma-separated backends."
    ),
    batch: str = typer.Option("1,8,32", "--batch", help="Comma-separated batch sizes."),
    size: str = typer.Option(None, "--size", help="Input HxW (default: the student's size)."),
    out: Path = typer.Option(
        None, "--out", help="Output folder (default: MODEL_DIR/../export, beside the exports)."
    ),
    repeats: int = typer.Option(20, "--repeats", help="Timed runs per batch size."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed runs first."),
    threads: int = typer.Option(None, "--threads", help="torch / ONNX Runtime threads."),
    max_seconds: float = typer.Option(30.0, "--max-seconds", help="Time cap per measurement."),
    calib_data: str = typer.Option(None, "--calib-data", help="INT8 calibration data set."),
    calib_layout: str = typer.Option("market1501", "--calib-layout", help=common.LAYOUT_HELP),
    profile_batch: int = typer.Option(
        None, "--profile-batch", help="Per-op ONNX Runtime profile at this batch size."
    ),
    exporter: str = typer.Option("auto", "--exporter", help="ONNX exporter: auto, dynamo, legacy."),
) -> None:
    """Latency, throughput, memory and FLOP floor of student and teacher on each backend."""
    from kdas.export.bench import BenchConfig, run_bench

    cfg = BenchConfig(
        backends=tuple(b.strip() for b in backends.split(",") if b.strip()),
        batches=tuple(common.parse_int_list(batch) or ()),
        size=common.parse_size(size),
        repeats=repeats,
        warmup=warmup,
        max_seconds=max_seconds,
        threads=threads,
        calib_data=calib_data,
        calib_layout=calib_layout,
        exporter=exporter,
        profile_batch=profile_batch,
    )
    result = run_bench(student, teacher, out, cfg)
    target = Path(result["written_to"])
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown((target / "bench.md").read_text()))
    ok = sum(r["status"] == "ok" for r in result["results"])
    typer.echo(f"{ok} measurements -> {target}/bench.json, bench.md, bench.png")
