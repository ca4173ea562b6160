"""Reading an image into RGB: one reader for training data, the runtime and the pictures.

PIL only (no torch, no numpy), so the torch-free runtime and the data sets share it. Decoding
happens here (`load()`), so a truncated file fails now, in one line naming it, instead of later
inside a DataLoader worker or a batch with a PIL message nobody can place.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar, Union

from PIL import Image, UnidentifiedImageError

from kdas.errors import KdasError

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image]  # noqa: UP007

# what PIL raises for a file that is not a (whole) image
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def describe_source(source: ImageSource, name: str | None = None) -> str:
    """How an error message names the image: the given name, the path, or what it is."""
    if name:
        return name
    if isinstance(source, (bytes, bytearray)):
        return f"uploaded image ({len(source)} bytes)"
    if isinstance(source, Image.Image):
        return "PIL image"
    return str(source)


def read_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """A path, encoded bytes or PIL image as a fully decoded RGB image.

    A missing, empty, corrupt or truncated image raises KdasError naming it (`name`, else the
    path).
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
        if not handle.exists():
            raise KdasError(f"image not found: {label}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-with-transparency chatter, not an error
            with Image.open(handle) as image:
                image.load()
                return image.convert("RGB")
    except _DECODE_ERRORS:
        raise KdasError(
            f"cannot read image {label}: not a readable image "
            "(corrupt, truncated or not an image file)"
        ) from None


T = TypeVar("T")


def drop_unreadable(
    items: Sequence[T], path_of: Callable[[T], str], stacklevel: int = 3
) -> tuple[list[T], list[str]]:
    """Decode every item's image once; returns the readable items and the unreadable paths,
    with one warning that counts them (a data set's `skip_corrupt`)."""
    kept: list[T] = []
    skipped: list[str] = []
    first = ""
    for item in items:
        try:
            read_image(path_of(item))
        except KdasError as exc:
            skipped.append(path_of(item))
            first = first or str(exc)
        else:
            kept.append(item)
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable images of {len(items)} (first: {first})",
            stacklevel=stacklevel,
        )
    return kept, skipped
