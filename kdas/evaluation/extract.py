"""Embeddings of a torch Re-ID model over image records (the one torch-using evaluation module).

Extraction is the slow half of an evaluation, so it can cache its result on disk; the cache key
hashes everything the numbers depend on (weights and buffers, records with file sizes and
modification times, input size, flip, autocast dtype), so a stale cache is never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from kdas.data.dataset import ReIDImageDataset
from kdas.data.records import ImageRecord
from kdas.data.transforms import build_eval_transform
from kdas.errors import KdasError
from kdas.evaluation.distances import compute_distance_matrix
from kdas.evaluation.metrics import RankResult, evaluate_rank
from kdas.evaluation.rerank import rerank as k_reciprocal_rerank
from kdas.progress import make_progress
from kdas.utils.atomic import atomic_output_path

_CACHE_FORMAT = "kdas-features-1"


@dataclass
class Features:
    """One embedding per record, in record order, with the record's identity and camera."""

    features: np.ndarray  # (N, D) float32
    pids: np.ndarray  # (N,) int64
    camids: np.ndarray  # (N,) int64
    paths: list[str]

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.features.ndim != 2 or len(self.features) != n:
            raise KdasError(f"features must be ({n}, dim), got shape {self.features.shape}")
        if len(self.pids) != n or len(self.camids) != n:
            raise KdasError(f"pids/camids must have {n} entries like the paths")

    def __len__(self) -> int:
        return len(self.paths)


def _as_records(records: Sequence[Any]) -> list[ImageRecord]:
    out = []
    for item in records:
        try:
            path, pid, camid = item
            out.append(ImageRecord(str(path), int(pid), int(camid)))
        except (TypeError, ValueError):
            raise KdasError(f"expected (path, pid, camid) records, got {item!r}") from None
    return out


def _weights_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes) and the class name."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cache_key(
    model: nn.Module,
    records: list[ImageRecord],
    size: tuple[int, int],
    flip: bool,
    autocast_dtype: torch.dtype | None,
) -> str:
    files = []
    for r in records:
        try:
            stat = os.stat(r.path)
            files.append([r.path, r.pid, r.camid, stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([r.path, r.pid, r.camid, None, None])
    payload = {
        "format": _CACHE_FORMAT,
        "weights": _weights_digest(model),
        "records": files,
        "size": list(size),
        "flip": bool(flip),
        "autocast": str(autocast_dtype),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _load_cache(path: Path, key: str) -> Features | None:
    """The cached features when the file exists, reads cleanly and carries `key`; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return Features(
                features=np.asarray(data["features"], dtype=np.float32),
                pids=np.asarray(data["pids"], dtype=np.int64),
                camids=np.asarray(data["camids"], dtype=np.int64),
                paths=[str(p) for p in data["paths"]],
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, KdasError):
        return None  # unreadable or from another version: recompute and overwrite


def _save_cache(path: Path, key: str, feats: Features) -> None:
    with atomic_output_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            key=np.array(key),
            features=feats.features,
            pids=feats.pids,
            camids=feats.camids,
            paths=np.array(feats.paths, dtype=str),
        )


def _embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = model(images)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != images.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise KdasError(
            f"the model returned {got} in eval mode; expected a (batch, dim) feature tensor"
        )
    return out


def extract_features(
    model: nn.Module,
    records: Sequence[ImageRecord],
    size: tuple[int, int],
    batch_size: int = 64,
    flip: bool = False,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Features:
    """Eval-mode embeddings of `records` (resized to `size` = (H, W)), as float32.

    The model must already live on `device`; its train/eval mode is restored afterwards.
    `flip` averages each embedding with that of the horizontally flipped image;
    `autocast_dtype` (e.g. torch.bfloat16) runs the forward under torch.autocast.
    """
    records = _as_records(records)
    if not records:
        raise KdasError("no images to extract features from (the record list is empty)")
    if batch_size < 1:
        raise KdasError(f"batch_size must be at least 1, got {batch_size}")
    size = (int(size[0]), int(size[1]))
    device = torch.device(device)

    key = cache = None
    if cache_path is not None:
        cache = Path(cache_path)
        key = _cache_key(model, records, size, flip, autocast_dtype)
        cached = _load_cache(cache, key)
        if cached is not None:
            return cached

    dataset = ReIDImageDataset(records, build_eval_transform(size))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    features: np.ndarray | None = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast, make_progress(progress) as bar:
            task = bar.add_task("extracting features", total=len(records))
            for images, _, _, index in loader:
                images = images.to(device, non_blocking=True)
                out = _embed(model, images).float()
                if flip:
                    out = (out + _embed(model, images.flip(3)).float()) / 2
                if features is None:
                    features = np.empty((len(records), out.shape[1]), dtype=np.float32)
                features[index.numpy()] = out.cpu().numpy()
                bar.advance(task, len(images))
    finally:
        model.train(was_training)

    result = Features(
        features=features,
        pids=np.array([r.pid for r in records], dtype=np.int64),
        camids=np.array([r.camid for r in records], dtype=np.int64),
        paths=[r.path for r in records],
    )
    if cache is not None and key is not None:
        _save_cache(cache, key, result)
    return result


def evaluate_features(
    query: Features,
    gallery: Features,
    metric: str = "cosine",
    rerank: bool = False,
    max_rank: int = 50,
) -> tuple[RankResult, np.ndarray]:
    """Metrics and the (query x gallery) distance matrix, optionally k-reciprocal re-ranked."""
    distmat = compute_distance_matrix(query.features, gallery.features, metric=metric)
    if rerank:
        distmat = k_reciprocal_rerank(
            distmat,
            compute_distance_matrix(query.features, query.features, metric=metric),
            compute_distance_matrix(gallery.features, gallery.features, metric=metric),
        )
    result = evaluate_rank(
        distmat, query.pids, gallery.pids, query.camids, gallery.camids, max_rank=max_rank
    )
    return result, distmat
