"""`kdas index ...`: build, grow, query and evaluate a gallery index (kdas.runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kdas.cli import common

app = typer.Typer(no_args_is_help=True)

# Options left unset stay None: the library's own defaults (kdas.runtime.faiss_backend's
# IndexParams and DEFAULT_* constants, kdas.runtime.pipeline) are the only ones.
TypeOption = typer.Option(None, "--type", help="Index type: flat (exact), ivf or hnsw.")
StorageOption = typer.Option(None, "--storage", help="ivf/hnsw vectors: flat, sq8 or fp16.")
LayoutOption = typer.Option(None, "--layout", "--data-layout", help=common.LAYOUT_HELP)
BatchOption = typer.Option(None, "--batch-size", help="Images per inference call.")


def _embed_with_progress(description: str, total: int | None, work: Any) -> Any:
    """Run `work(callback)`; the callback's (done, total) drive a progress bar."""
    from kdas.progress import make_progress

    with make_progress(rate="images") as progress:
        task = progress.add_task(description, total=total)
        return work(lambda done, count: progress.update(task, completed=done, total=count))


def _gallery_records(gallery: Path, layout: str | None, options: dict[str, Any]) -> list[Any]:
    """The gallery split of a data set, or every Market-named image of a folder."""
    from kdas.data.layouts import folder, load_dataset

    if layout is not None:
        return list(load_dataset(gallery, layout, **options).gallery)
    return folder.folder_records(gallery)


@app.command("build")
def build_command(
    model: Path = typer.Argument(..., help="The exported model: .onnx, .xml (+.bin) or .engine."),
    gallery: Path = typer.Argument(
        ..., help="A folder of Market-named images, or a data set root with --layout."
    ),
    out: Path = typer.Option(..., "--out", help="The index folder to write."),
    index_type: str | None = TypeOption,
    layout: str | None = LayoutOption,
    storage: str | None = StorageOption,
    nlist: int | None = typer.Option(None, "--nlist", help="ivf cells (default ~4*sqrt(N))."),
    nprobe: int | None = typer.Option(None, "--nprobe", help="ivf cells searched per query."),
    m: int | None = typer.Option(None, "--m", help="hnsw links per node."),
    ef_search: int | None = typer.Option(None, "--ef-search", help="hnsw search breadth."),
    ef_construction: int | None = typer.Option(
        None, "--ef-construction", help="hnsw build breadth."
    ),
    batch_size: int | None = BatchOption,
    device: str | None = typer.Option(None, "--device", help="auto, cpu or gpu (faiss-gpu)."),
    backend: str | None = common.BackendOption,
    ov_device: str | None = common.OvDeviceOption,
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    distractors: bool = common.DistractorsOption,
) -> None:
    """Embed a gallery with a model (.onnx, OpenVINO .xml or TensorRT .engine) and write a
    self-contained index folder."""
    from kdas.runtime.pipeline import build_index

    records = _gallery_records(
        gallery, layout, common.layout_options(variant, merge_val, distractors) or {}
    )
    params = common.given(
        storage=storage, nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search,
        ef_construction=ef_construction,
    )  # fmt: skip
    options = common.given(
        index_type=index_type, batch_size=batch_size, device=device,
        choice=common.embedder_choice(backend, ov_device),
    )  # fmt: skip
    index = _embed_with_progress(
        "embedding gallery",
        len(records),
        lambda progress: build_index(
            model, records, out, params=params, progress=progress, **options
        ),
    )
    typer.echo(f"indexed {len(index)} images ({index.index_type}, {index.dim}-d) -> {out}")


@app.command("add")
def add_command(
    index: Path = typer.Argument(..., help="An index folder."),
    images: list[Path] = typer.Argument(..., help="Images to add (Market-style names)."),
    pid: int = typer.Option(None, "--pid", help="Identity of all images (else from the name)."),
    camid: int = typer.Option(None, "--camid", help="0-based camera (else from the name)."),
    batch_size: int | None = BatchOption,
    backend: str | None = common.BackendOption,
    ov_device: str | None = common.OvDeviceOption,
) -> None:
    """Add images to an index (saved atomically)."""
    from kdas.data.layouts.folder import image_records
    from kdas.runtime.pipeline import add_to_index

    records = image_records(images, pid, camid)
    ids = _embed_with_progress(
        "embedding images",
        len(records),
        lambda progress: add_to_index(
            index,
            records,
            progress=progress,
            **common.given(
                batch_size=batch_size, choice=common.embedder_choice(backend, ov_device)
            ),
        ),
    )
    typer.echo(f"added {len(ids)} images (ids {ids[0]}..{ids[-1]}) to {index}")


@app.command("remove")
def remove_command(
    index: Path = typer.Argument(..., help="An index folder."),
    ids: list[int] = typer.Argument(
        ..., help="Gallery ids to remove (as `kdas index query` shows)."
    ),
    compact: bool = typer.Option(False, "--compact", help="Also rebuild without tombstones."),
) -> None:
    """Remove gallery images from an index (all or none; saved atomically)."""
    from kdas.runtime.pipeline import remove_from_index

    removed, stored = remove_from_index(index, ids, compact=compact)
    typer.echo(f"removed {removed} images from {index} ({stored} vectors stored)")


@app.command("compact")
def compact_command(index: Path = typer.Argument(..., help="An index folder.")) -> None:
    """Rebuild an index from its live vectors: drops the tombstones HNSW removals leave."""
    from kdas.runtime.pipeline import compact_index

    before, after = compact_index(index)
    typer.echo(f"compacted {index}: {before} -> {after} stored vectors")


@app.command("query")
def query_command(
    index: Path = typer.Argument(..., help="An index folder."),
    images: list[Path] = typer.Argument(..., help="Query images."),
    k: int | None = typer.Option(None, "--k", help="Hits per query."),
    exclude_same_camera: bool = typer.Option(
        False, "--exclude-same-camera", help="Skip gallery images from the query's camera."
    ),
    camid: int = typer.Option(None, "--camid", help="0-based query camera (else from the name)."),
    rerank: bool = typer.Option(False, "--rerank", help="k-reciprocal re-ranking of the top hits."),
    picture: Path = typer.Option(None, "--picture", help="Write query + hits as a PNG."),
    backend: str | None = common.BackendOption,
    ov_device: str | None = common.OvDeviceOption,
) -> None:
    """Search an index with images; prints a table, optionally draws the hits."""
    from rich.console import Console
    from rich.table import Table

    from kdas.data.layouts.folder import market_name
    from kdas.runtime.picture import query_picture
    from kdas.runtime.pipeline import query_index

    if picture is not None:
        from kdas.utils.outputs import check_out_file

        check_out_file(picture, option="--picture", example="hits.png")
    parsed = [market_name(p) or (None, None) for p in images]
    cams = [camid if camid is not None else c for _, c in parsed]
    if exclude_same_camera and any(c is None for c in cams):
        from kdas.errors import KdasError

        raise KdasError("--exclude-same-camera needs --camid or Market-style query names")
    results = query_index(
        index, images, query_camids=cams if exclude_same_camera else None,
        exclude_same_camera=exclude_same_camera, rerank=rerank,
        **common.given(k=k, choice=common.embedder_choice(backend, ov_device)),
    )  # fmt: skip
    table = Table("query", "rank", "score", "id", "pid", "cam", "path")
    for result in results:
        for rank, hit in enumerate(result.hits, start=1):
            name = Path(result.image).name if rank == 1 else ""
            table.add_row(
                name, str(rank), f"{hit.score:.4f}", str(hit.id), str(hit.pid),
                str(hit.camid), hit.path,
            )  # fmt: skip
    Console().print(table)
    if picture is not None:
        query_picture(images, [r.hits for r in results], picture, [p for p, _ in parsed])
        typer.echo(f"picture -> {picture}")


@app.command("eval")
def eval_command(
    index: Path = typer.Argument(..., help="An index folder."),
    data: str = typer.Option(..., "--data", help=common.DATA_HELP),
    layout: str | None = LayoutOption,
    out: Path = typer.Option(None, "--out", help="Write the metrics as JSON here."),
    batch_size: int | None = BatchOption,
    depth: int | None = typer.Option(None, "--depth", help="Hits taken from an approximate index."),
    backend: str | None = common.BackendOption,
    ov_device: str | None = common.OvDeviceOption,
    variant: str = common.VariantOption,
    merge_val: bool = common.MergeValOption,
    distractors: bool = common.DistractorsOption,
) -> None:
    """Rank-1/5/10, mAP and mINP of the index answering a data set's query split."""
    from kdas.runtime.pipeline import evaluate_index_on_dataset

    options = common.layout_options(variant, merge_val, distractors) or {}
    result = _embed_with_progress(
        "embedding queries",
        None,
        lambda progress: evaluate_index_on_dataset(
            index, data, options=options, out=out, progress=progress,
            **common.given(
                layout=layout, batch_size=batch_size, depth=depth,
                choice=common.embedder_choice(backend, ov_device),
            ),
        ),
    )  # fmt: skip
    metrics = result["metrics"]
    typer.echo(
        f"rank-1 {metrics['rank1']:.4f}  rank-5 {metrics['rank5']:.4f}  "
        f"rank-10 {metrics['rank10']:.4f}  mAP {metrics['mAP']:.4f}  mINP {metrics['mINP']:.4f}  "
        f"({result['num_query']} queries, {result['num_gallery']} gallery, {result['mode']})"
    )
    if out is not None:
        typer.echo(f"metrics -> {out}")


@app.command("info")
def info_command(index: Path = typer.Argument(..., help="An index folder.")) -> None:
    """What an index holds: model, type, parameters, size."""
    import json

    from kdas.runtime.manifest import read_manifest

    manifest = read_manifest(index).to_dict()
    manifest.pop("files", None)
    typer.echo(json.dumps(manifest, indent=2))
