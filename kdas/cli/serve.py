"""`kdas serve INDEX`: the HTTP retrieval service (FastAPI + uvicorn) over one index folder."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_command(
    index: Path = typer.Argument(..., help="An index folder (kdas index build)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port"),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest image accepted."),
    max_batch: int = typer.Option(16, "--max-batch", help="Most images in one request."),
    max_k: int = typer.Option(100, "--max-k", help="Largest k a search may ask for."),
    model: Path = typer.Option(
        None,
        "--model",
        help="Serve with this model (e.g. a TensorRT engine of the same weights) "
        "instead of the index's model.onnx.",
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve search (and, with KDAS_API_TOKEN set, gallery changes) over HTTP; page at /."""
    from kdas.runtime.service import ServiceConfig, serve

    config = ServiceConfig(max_upload_mb=max_upload_mb, max_batch=max_batch, max_k=max_k)
    serve(index, host=host, port=port, config=config, model_path=model, log_level=log_level)
