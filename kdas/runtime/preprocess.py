"""The training eval transform, re-done in PIL + numpy so the runtime needs no torch.

Same steps, same order as `kdas.data.transforms.build_eval_transform`: RGB, PIL bilinear resize
to (W, H), scale to [0, 1] in float32, normalise with the model's mean/std, CHW. Any drift here
would silently lower retrieval accuracy, so a test holds it to the torch version within 1e-5.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdas.errors import KdasError
from kdas.runtime.model_meta import EmbeddingModelInfo

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image]  # noqa: UP007


def describe_source(source: ImageSource, name: str | None = None) -> str:
    if name:
        return name
    if isinstance(source, (bytes, bytearray)):
        return f"uploaded image ({len(source)} bytes)"
    if isinstance(source, Image.Image):
        return "PIL image"
    return str(source)


def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Open a path, encoded bytes or PIL image as a fully decoded RGB image.

    Decoding happens here (`load()`), so a truncated file fails with its name instead of later,
    inside a batch, with a PIL message nobody can place.
    """
    label = describe_source(source, name)
    if isinstance(source, Image.Image):
        return source if source.mode == "RGB" else source.convert("RGB")
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise KdasError(f"{label} is empty: send a JPEG or PNG image")
        handle: io.BytesIO | Path = io.BytesIO(bytes(source))
    else:
        handle = Path(source)
        if not handle.is_file():
            raise KdasError(f"image {label} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-with-transparency chatter, not an error
            with Image.open(handle) as image:
                image.load()
                return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise KdasError(
            f"{label} is not a readable image (corrupt, truncated or not an image file)"
        ) from None


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
        batch[i] = preprocess_image(load_image(source, name), info)
    return batch
