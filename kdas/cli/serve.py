"""`kdas serve INDEX`: the HTTP retrieval service (FastAPI + uvicorn) over one index folder."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_command(
    index: Path = typer.Argument(..., help="An index folder (kdas index build)."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on."),
    port: int | None = typer.Option(None, "--port"),
    max_upload_mb: float | None = typer.Option(
        None, "--max-upload-mb", help="Largest image accepted."
    ),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Most images in one request."),
    max_k: int | None = typer.Option(None, "--max-k", help="Largest k a search may ask for."),
    model: Path = typer.Option(
        None,
        "--model",
        help="Serve with this model (e.g. an OpenVINO IR or a TensorRT engine of the same "
        "weights) instead of the index's own copy.",
    ),
    log_level: str | None = typer.Option(None, "--log-level"),
    backend: str | None = typer.Option(
        None, "--backend", help="auto (by file type), onnxruntime, openvino or tensorrt."
    ),
    ov_device: str | None = typer.Option(
        None, "--device", "--ov-device", help="OpenVINO device: CPU (default), GPU, NPU, AUTO."
    ),
) -> None:
    """Serve search (and, with KDAS_API_TOKEN set, gallery changes) over HTTP; page at /."""
    from kdas.cli.common import embedder_choice
    from kdas.runtime.service import ServiceConfig, serve

    # options left out take ServiceConfig's defaults, the only ones

    given = {
        "host": host, "port": port, "max_upload_mb": max_upload_mb, "max_batch": max_batch,
        "max_k": max_k, "log_level": log_level,
    }  # fmt: skip
    config = ServiceConfig(**{name: value for name, value in given.items() if value is not None})
    serve(index, config=config, model_path=model, choice=embedder_choice(backend, ov_device))
