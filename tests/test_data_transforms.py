"""Transforms against a PIL + numpy reference, and reading images that are broken."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdas.constants import IMAGENET_MEAN, IMAGENET_STD
from kdas.data.dataset import ReIDImageDataset, read_image
from kdas.data.records import ImageRecord
from kdas.data.transforms import build_eval_transform, build_train_transform
from kdas.errors import KdasError


def _picture(width: int = 40, height: int = 90, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def _reference(image: Image.Image, height: int, width: int) -> np.ndarray:
    """The eval contract written out with PIL and numpy only."""
    resized = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return array.transpose(2, 0, 1)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_eval_transform_matches_the_pil_numpy_contract(mode):
    image = _picture(mode=mode)
    out = build_eval_transform((64, 32))(image)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (3, 64, 32)
    assert np.abs(out.numpy() - _reference(image, 64, 32)).max() < 1e-5


def test_train_transform_shapes_and_its_deterministic_corner():
    image = _picture()
    out = build_train_transform((64, 32))(image)
    assert tuple(out.shape) == (3, 64, 32) and out.dtype == torch.float32
    # flip always, no pad, no erasing: exactly the mirrored eval output
    fixed = build_train_transform((64, 32), flip_prob=1.0, pad=0, random_erasing_prob=0.0)
    mirrored = _reference(image, 64, 32)[:, :, ::-1]
    assert np.abs(fixed(image).numpy() - mirrored).max() < 1e-5


def test_train_transform_pads_crops_and_erases():
    image = Image.new("RGB", (32, 64), (200, 30, 90))
    torch.manual_seed(0)
    padded = build_train_transform((64, 32), flip_prob=0.0, pad=10, random_erasing_prob=0.0)
    outs = [padded(image) for _ in range(20)]
    black = torch.tensor([(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    # some crops reach into the zero padding, which normalises to -mean/std
    assert any(torch.isclose(o[:, 0, 0], black, atol=1e-5).all() for o in outs)
    erased = build_train_transform((64, 32), flip_prob=0.0, pad=0, random_erasing_prob=1.0)
    assert (erased(image) == 0).all(dim=0).any()


def test_transform_arguments_are_checked():
    with pytest.raises(KdasError, match="input size must be positive"):
        build_eval_transform((0, 32))
    with pytest.raises(KdasError, match=r"flip_prob must be in \[0, 1\], got 1.5"):
        build_train_transform((64, 32), flip_prob=1.5)


def _jpeg(path: Path, image: Image.Image) -> Path:
    image.save(path, "JPEG", quality=90)
    return path


def test_read_image_errors_name_the_file(tmp_path):
    good = _jpeg(tmp_path / "good.jpg", _picture())
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    gray = tmp_path / "gray.png"
    _picture(mode="L").save(gray)

    assert read_image(good).mode == "RGB" and read_image(good).size == (40, 90)
    assert read_image(gray).mode == "RGB"
    with pytest.raises(KdasError, match=r"image not found: .*missing\.jpg"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(KdasError, match=r"cannot read image .*truncated\.jpg"):
        read_image(truncated)
    with pytest.raises(KdasError, match=r"cannot read image .*garbage\.jpg"):
        read_image(garbage)


def test_dataset_items_and_corrupt_images(tmp_path):
    paths = [_jpeg(tmp_path / f"{i}.jpg", _picture(width=20 + i)) for i in range(3)]
    broken = tmp_path / "broken.jpg"
    buffer = io.BytesIO()
    _picture().save(buffer, "JPEG")
    broken.write_bytes(buffer.getvalue()[:200])
    records = [
        ImageRecord(str(paths[0]), 0, 1),
        ImageRecord(str(broken), 1, 0),
        ImageRecord(str(paths[1]), 1, 2),
        ImageRecord(str(tmp_path / "gone.jpg"), 2, 0),
        ImageRecord(str(paths[2]), 2, 3),
    ]
    transform = build_eval_transform((32, 16))

    strict = ReIDImageDataset(records, transform)
    image, pid, camid, index = strict[2]
    assert tuple(image.shape) == (3, 32, 16) and (pid, camid, index) == (1, 2, 2)
    with pytest.raises(KdasError, match=r"broken\.jpg"):
        strict[1]

    with pytest.warns(UserWarning, match=r"skipped 2 unreadable images of 5 \(first: .*broken"):
        lenient = ReIDImageDataset(records, transform, skip_corrupt=True)
    assert lenient.num_skipped == 2 and lenient.skipped == [str(broken), str(tmp_path / "gone.jpg")]
    assert [r.path for r in lenient.records] == [str(p) for p in paths]
    assert [lenient[i][1:] for i in range(len(lenient))] == [(0, 1, 0), (1, 2, 1), (2, 3, 2)]
    assert lenient.pids == [0, 1, 2]
