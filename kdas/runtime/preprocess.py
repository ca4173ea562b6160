"""The training eval transform, re-done in PIL + numpy so the runtime needs no torch.

Same steps, same order as `kdas.data.transforms.build_eval_transform`: RGB, PIL bilinear resize
to (W, H), scale to [0, 1] in float32, normalise with the model's mean/std, CHW. Any drift here
would silently lower retrieval accuracy, so a test holds it to the torch version within 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from kdas.images import ImageSource, read_image
from kdas.runtime.model_meta import EmbeddingModelInfo

__all__ = ["ImageSource", "preprocess_batch", "preprocess_image"]


def preprocess_image(image: Image.Image, info: EmbeddingModelInfo) -> np.ndarray:
    """One RGB PIL image -> float32 CHW array, normalised as the model expects."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = (info.input_width, info.input_height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(info.mean, dtype=np.float32)
    std = np.asarray(info.std, dtype=np.float32)
    array = (array - mean) / std
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess_batch(
    sources: Sequence[ImageSource],
    info: EmbeddingModelInfo,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Load and preprocess several images into one NCHW float32 batch."""
    batch = np.empty((len(sources), 3, info.input_height, info.input_width), dtype=np.float32)
    for i, source in enumerate(sources):
        name = names[i] if names is not None else None
        batch[i] = preprocess_image(read_image(source, name), info)
    return batch
