"""Evaluate a Re-ID model on a data set's query/gallery split, sharded over DDP ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdas.constants import DEFAULT_LAYOUT
from kdas.data.records import ImageRecord, ReIDSplits
from kdas.engine.distributed import DistContext, broadcast_object, gather_arrays
from kdas.engine.precision import autocast_dtype, check_precision, resolve_device
from kdas.files import CMC_PLOT, EVAL_DIR, METRICS_FILE, RANK_LIST_PLOT
from kdas.utils.atomic import atomic_write_json
from kdas.utils.outputs import check_out_dir


def _extract_sharded(
    ctx: DistContext,
    model: torch.nn.Module,
    records: list[ImageRecord],
    size: tuple[int, int],
    batch_size: int,
    flip: bool,
    precision: str,
    num_workers: int,
    progress: bool,
) -> np.ndarray | None:
    from kdas.evaluation.extract import extract_features

    shard = records[ctx.rank :: ctx.world_size]
    feats = extract_features(
        model,
        shard,
        size,
        batch_size=batch_size,
        flip=flip,
        device=ctx.device,
        num_workers=num_workers,
        autocast_dtype=autocast_dtype(precision),
        progress=progress and ctx.is_main,
    ).features
    parts = gather_arrays(ctx, feats)
    if parts is None:
        return None
    out = np.empty((len(records), feats.shape[1]), dtype=np.float32)
    for rank, part in enumerate(parts):
        out[rank :: ctx.world_size] = part
    return out


def _as_features(array: np.ndarray, records: list[ImageRecord]) -> Any:
    from kdas.evaluation.extract import Features

    return Features(
        array,
        np.array([r.pid for r in records], dtype=np.int64),
        np.array([r.camid for r in records], dtype=np.int64),
        [r.path for r in records],
    )


def evaluate_model(
    model: torch.nn.Module,
    splits: ReIDSplits,
    size: tuple[int, int],
    ctx: DistContext | None = None,
    batch_size: int = 64,
    flip: bool = False,
    precision: str = "fp32",
    num_workers: int = 0,
    rerank: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """rank-1/5/10, mAP, mINP (the same numbers on every rank)."""
    from kdas.evaluation.extract import evaluate_features

    ctx = ctx or DistContext(device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    args = (size, batch_size, flip, precision, num_workers, progress)
    q = _extract_sharded(ctx, model, splits.query, *args)
    g = _extract_sharded(ctx, model, splits.gallery, *args)
    model.train(was_training)
    metrics = None
    if ctx.is_main:
        result, _ = evaluate_features(
            _as_features(q, splits.query), _as_features(g, splits.gallery), rerank=rerank
        )
        metrics = result.to_dict()
    return broadcast_object(ctx, metrics)


def evaluate_artifact(
    model_dir: str | Path,
    data_root: str,
    layout: str = DEFAULT_LAYOUT,
    out_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    rerank: bool = False,
    flip: bool = False,
    precision: str = "fp32",
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
) -> dict[str, Any]:
    """`kdas eval`: metrics of a model folder on a data set, plus a rank list and a CMC plot."""
    from kdas.data.layouts import load_dataset
    from kdas.evaluation.extract import evaluate_features, extract_features
    from kdas.evaluation.plots import plot_cmc, plot_rank_list
    from kdas.models import load as load_model

    out = check_out_dir(Path(out_dir) if out_dir else Path(model_dir) / EVAL_DIR)
    loaded = load_model(str(model_dir))
    splits = load_dataset(data_root, layout, **(options or {}))
    ctx = DistContext(device=resolve_device(device))
    check_precision(precision, ctx.device)
    model = loaded.model.to(ctx.device)
    size = tuple(loaded.spec.input_size)
    dtype = autocast_dtype(precision)
    feats = [
        extract_features(
            model,
            records,
            size,
            batch_size=batch_size,
            flip=flip,
            device=ctx.device,
            num_workers=num_workers,
            autocast_dtype=dtype,
        )
        for records in (splits.query, splits.gallery)
    ]
    result, distmat = evaluate_features(*feats, rerank=rerank)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": str(model_dir),
        "weights_sha256": loaded.weights_sha256,
        "data": {"root": str(data_root), "layout": layout, "options": options or {}},
        "rerank": rerank,
        "flip": flip,
        "precision": precision,
        "num_query": len(splits.query),
        "num_gallery": len(splits.gallery),
        "metrics": result.to_dict(),
        "cmc": [float(v) for v in result.cmc],
        "out_dir": str(out),
    }
    atomic_write_json(out / METRICS_FILE, report)
    plot_rank_list(distmat, splits.query, splits.gallery, out / RANK_LIST_PLOT)
    plot_cmc({loaded.spec.kind: result.cmc}, out / CMC_PLOT)
    return report
