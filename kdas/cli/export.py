"""`kdas export`, `kdas parity`, `kdas bench`: deployable files, their checks, their speed."""

from __future__ import annotations

from pathlib import Path

import typer

from kdas.cli import common
from kdas.constants import ONNX_OPSET

EXPORTER_HELP = "ONNX exporter: auto, dynamo or legacy."
CalibLayoutOption = typer.Option(None, "--calib-layout", help=common.LAYOUT_HELP)


def export_command(
    model_dir: Path = typer.Argument(..., help="A model folder (teacher or student)."),
    to: str = typer.Option(None, "--to", help="onnx (default), tensorrt or openvino."),
    out: Path = typer.Option(
        None,
        "--out",
        help="Output file (default MODEL_DIR/../export/<kind>[.fp16|.int8].onnx; OpenVINO: "
        "<kind>[.bf16|.int8].xml with its .bin beside it).",
    ),
    opset: int = typer.Option(None, "--opset", help=f"ONNX opset (default {ONNX_OPSET})."),
    exporter: str = typer.Option(None, "--exporter", help=EXPORTER_HELP),
    fp16: bool = typer.Option(False, "--fp16", help="ONNX with float16 weights (for GPUs)."),
    int8: bool = typer.Option(
        False, "--int8", help="ONNX INT8 (QDQ) for CPUs; needs --calib-data."
    ),
    precision: str = typer.Option(
        None, "--precision", help="TensorRT: fp32, fp16 or int8. OpenVINO: fp32, bf16 or int8."
    ),
    calib_data: Path = typer.Option(
        None, "--calib-data", help="Data set root for INT8 calibration."
    ),
    calib_layout: str = CalibLayoutOption,
    calib_images: int = typer.Option(
        None, "--calib-images", help="Training images to calibrate on."
    ),
    calib_method: str = typer.Option(
        None, "--calib-method", help="minmax (default), entropy, percentile."
    ),
    max_batch: int = typer.Option(
        None, "--max-batch", help="TensorRT: largest batch of the profile."
    ),
    size: str = typer.Option(None, "--size", help="Input HxW (default: the training size)."),
) -> None:
    """Export a model folder to ONNX (fp32, fp16, int8), a TensorRT engine or an OpenVINO IR."""
    from kdas.export.api import export_model

    path = export_model(
        model_dir, out=out, fp16=fp16, int8=int8, calib_data=calib_data,
        input_size=common.parse_size(size),
        **common.given(
            to=to, opset=opset, exporter=exporter, precision=precision, max_batch=max_batch,
            calib_layout=calib_layout, calib_images=calib_images, calib_method=calib_method,
        ),
    )  # fmt: skip
    written = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]  # IR: + .bin
    size_mb = sum(p.stat().st_size for p in written) / 2**20
    typer.echo(f"wrote {' + '.join(str(p) for p in written)} ({size_mb:.1f} MB)")


@common.with_options(common.DataSetOptions)
def parity_command(
    *,
    shared: common.DataSetOptions,
    model_dir: Path = typer.Argument(..., help="The model folder that was exported."),
    exported: Path = typer.Argument(
        ..., help="The exported .onnx file, OpenVINO .xml (with its .bin) or TensorRT .engine."
    ),
    num_images: int = typer.Option(
        None,
        "--num-images",
        help="Use N query and N gallery images, spread evenly over each split (default: all).",
    ),
    out: Path = typer.Option(None, "--out", help="Report file (default: parity.json beside it)."),
    batch_size: int = typer.Option(None, "--batch-size"),
    providers: str = typer.Option(None, "--providers", help="ONNX Runtime: auto, cpu, cuda."),
    ov_device: str = typer.Option(
        None, "--ov-device", help="OpenVINO device: CPU (default), GPU, NPU or AUTO."
    ),
) -> None:
    """Compare an exported model with its PyTorch model; exit code 1 when a threshold fails."""
    from kdas.export.parity import check_parity, render_parity, require_passed

    report = check_parity(
        model_dir,
        exported,
        shared.data,
        options=shared.layout_options(),
        num_images=num_images,
        out=out,
        **common.given(
            layout=shared.layout, batch_size=batch_size, providers=providers, device=ov_device
        ),
    )
    render_parity(report)
    require_passed(report)


def bench_command(
    student: Path = typer.Option(None, "--student", help="Student model folder."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher model folder."),
    backends: str = typer.Option(
        None,
        "--backends",
        help="Comma-separated backends (default: all of them; openvino-fp32, openvino-bf16 and "
        "openvino-int8 need the openvino extra).",
    ),
    batch: str = typer.Option(None, "--batch", help="Comma-separated batch sizes."),
    size: str = typer.Option(None, "--size", help="Input HxW (default: the student's size)."),
    out: Path = typer.Option(
        None, "--out", help="Output folder (default: MODEL_DIR/../export, beside the exports)."
    ),
    repeats: int = typer.Option(None, "--repeats", help="Timed runs per batch size."),
    warmup: int = typer.Option(None, "--warmup", help="Untimed runs first."),
    threads: int = typer.Option(None, "--threads", help="torch / ONNX Runtime / OpenVINO threads."),
    max_seconds: float = typer.Option(None, "--max-seconds", help="Time cap per measurement."),
    calib_data: str = typer.Option(None, "--calib-data", help="INT8 calibration data set."),
    calib_layout: str = CalibLayoutOption,
    profile_batch: int = typer.Option(
        None, "--profile-batch", help="Per-op ONNX Runtime profile at this batch size."
    ),
    exporter: str = typer.Option(None, "--exporter", help=EXPORTER_HELP),
    latency_table: Path = typer.Option(
        None, "--latency-table", help="Compare the student's predicted latency (this table)."
    ),
    allow_foreign_lut: bool = typer.Option(
        None, "--allow-foreign-lut", help="Accept a latency table from another machine kind."
    ),
) -> None:
    """Latency, throughput, memory and FLOP floor of student and teacher on each backend, and
    each model on its own fastest backend."""
    from kdas.export.bench import BenchConfig, run_bench
    from kdas.export.report import render_bench

    cfg = BenchConfig(
        **common.given(
            backends=common.parse_names(backends), batches=common.parse_int_list(batch),
            size=common.parse_size(size), repeats=repeats, warmup=warmup, threads=threads,
            max_seconds=max_seconds, profile_batch=profile_batch, exporter=exporter,
            calib_data=calib_data, calib_layout=calib_layout,
            latency_table=str(latency_table) if latency_table else None,
            allow_foreign_lut=allow_foreign_lut,
        )
    )  # fmt: skip
    render_bench(run_bench(student, teacher, out, cfg))
