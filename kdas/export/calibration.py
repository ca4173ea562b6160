"""Calibration images for INT8 (ONNX Runtime and TensorRT): real training images, preprocessed
exactly as the runtime does it, because the activation ranges found here are baked into the
quantized model and must be those the deployed model will see."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kdas.constants import DEFAULT_LAYOUT
from kdas.errors import KdasError
from kdas.runtime.model_meta import EmbeddingModelInfo
from kdas.runtime.preprocess import preprocess_batch

CALIBRATION_IMAGES = 256  # training images INT8 ranges are calibrated on, by default


def pick_evenly(paths: list[str], count: int) -> list[str]:
    """`count` paths spread evenly over the (sorted, identity-grouped) list: every identity
    range and camera gets a share, deterministically, without a random seed to track."""
    if count < 1:
        raise KdasError(f"calibration needs at least 1 image, got {count}")
    if count >= len(paths):
        return list(paths)
    index = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in np.unique(index)]


def calibration_paths(
    data_root: str | os.PathLike[str],
    layout: str = DEFAULT_LAYOUT,
    count: int = CALIBRATION_IMAGES,
    options: dict | None = None,
) -> list[str]:
    """Image paths from the training split of a data set (the test split stays unseen)."""
    from kdas.data.layouts import load_dataset

    splits = load_dataset(str(data_root), layout, **(options or {}))
    paths = sorted(r.path for r in splits.train)
    if not paths:
        raise KdasError(f"{data_root} has no training images to calibrate INT8 with")
    return pick_evenly(paths, count)


@dataclass
class CalibrationBatches:
    """Preprocessed NCHW float32 batches of the calibration images, decoded on demand."""

    paths: list[str]
    info: EmbeddingModelInfo
    batch_size: int = 16

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.paths), self.batch_size):
            yield preprocess_batch(self.paths[start : start + self.batch_size], self.info)
