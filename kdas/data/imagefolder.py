"""An ImageNet-layout folder of classified images, for pre-training a student (paper 4.4).

Layout (the one torchvision's `ImageFolder` reads, one folder per class):

    ROOT/train/<class>/**/*.jpg     the training images
    ROOT/val/<class>/**/*.jpg       optional: the held-out images top-1 / top-5 are measured on

or, when ROOT has no `train/` folder, `ROOT/<class>/**/*.jpg` directly (then there is no
validation split). Class names are sorted and numbered in that order; a `val/` class must be
one of the training classes. Files are listed sorted, so labels and order never depend on the
file system. Images are decoded by `kdas.images.read_image`, so a corrupt file is named in one
line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import InterpolationMode, v2

from kdas.constants import IMAGENET_MEAN, IMAGENET_STD
from kdas.data.samplers import item_seed
from kdas.errors import KdasError
from kdas.images import drop_unreadable, read_image

# torchvision's `IMG_EXTENSIONS`
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TRAIN_DIR = "train"
VAL_DIR = "val"
LAYOUT_HINT = (
    "expected ROOT/train/<class>/*.jpg (optionally ROOT/val/<class>/*.jpg) or ROOT/<class>/*.jpg"
)


@dataclass(frozen=True)
class ImageFolderSplits:
    root: str
    classes: tuple[str, ...]  # label i is classes[i]
    train: tuple[tuple[str, int], ...]  # (path, label)
    val: tuple[tuple[str, int], ...]  # empty when there is no val/ folder

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_validation(self) -> bool:
        return bool(self.val)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _scan(folder: Path, what: str) -> dict[str, list[Path]]:
    """{class name: its images} of one split; every class must hold at least one image."""
    classes = _class_dirs(folder)
    if not classes:
        raise KdasError(f"{folder} has no class folders; {LAYOUT_HINT}")
    found = {d.name: _images_in(d) for d in classes}
    empty = [name for name, images in found.items() if not images]
    if len(empty) == len(found):
        raise KdasError(
            f"the class folders of {folder} hold no images ({', '.join(IMAGE_EXTENSIONS)}); "
            f"{LAYOUT_HINT}"
        )
    if empty:
        raise KdasError(
            f"{what} class folder {folder / empty[0]} holds no images "
            f"({len(empty)} of {len(found)} classes are empty): add images or remove the folder"
        )
    return found


def scan_image_folder(root: str | Path) -> ImageFolderSplits:
    """The classes and (path, label) lists of an ImageNet-layout folder (see the module doc)."""
    root = Path(root)
    if not root.exists():
        raise KdasError(f"image folder not found: {root}")
    if not root.is_dir():
        raise KdasError(f"{root} is a file, not an image folder; {LAYOUT_HINT}")
    train_dir = root / TRAIN_DIR
    flat = not train_dir.is_dir()
    train = _scan(root if flat else train_dir, "training")
    classes = tuple(sorted(train))
    label = {name: i for i, name in enumerate(classes)}
    val: dict[str, list[Path]] = {}
    if not flat and (root / VAL_DIR).is_dir():
        val = _scan(root / VAL_DIR, "validation")
        unknown = sorted(set(val) - set(label))
        if unknown:
            raise KdasError(
                f"validation class {unknown[0]!r} ({len(unknown)} in all) has no folder in "
                f"{train_dir}: val/ must use the training class names"
            )

    def pairs(split: dict[str, list[Path]]) -> tuple[tuple[str, int], ...]:
        return tuple((str(p), label[name]) for name in sorted(split) for p in split[name])

    return ImageFolderSplits(str(root), classes, pairs(train), pairs(val))


def build_classification_train_transform(
    size: tuple[int, int], crop_scale: tuple[float, float] = (0.25, 1.0), flip_prob: float = 0.5
) -> v2.Compose:
    """A random crop of `crop_scale` of the image's area around the output's aspect ratio
    (±1/3, as ImageNet training does around 1), resized to `size` (height, width), a flip."""
    height, width = (int(v) for v in size)
    low, high = (float(v) for v in crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise KdasError(f"crop_scale must satisfy 0 < low <= high <= 1, got {tuple(crop_scale)}")
    if not 0.0 <= flip_prob <= 1.0:
        raise KdasError(f"flip_prob must be in [0, 1], got {flip_prob}")
    aspect = width / height
    return v2.Compose(
        [
            v2.RGB(),
            v2.RandomResizedCrop(
                (height, width),
                scale=(low, high),
                ratio=(aspect * 3 / 4, aspect * 4 / 3),
                interpolation=InterpolationMode.BILINEAR,
                antialias=True,
            ),
            v2.RandomHorizontalFlip(p=flip_prob),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        ]
    )


class ClassImageDataset(Dataset):
    """(path, label) pairs as a Dataset of `(image, label)`; an index may be `(index, seed)`,
    and then the random augmentation is a function of the seed alone (as in
    `kdas.data.dataset.ReIDImageDataset`), so a resumed or sharded run sees the same pixels."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable[[Image.Image], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.transform = transform
        self.skipped: list[str] = []
        kept = list(samples)
        if skip_corrupt:
            kept, self.skipped = drop_unreadable(samples, lambda sample: sample[0])
            if not kept:
                raise KdasError("every image is unreadable; check the image folder")
        self.samples: list[tuple[str, int]] = kept

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, int]:
        seed = None
        if isinstance(index, tuple):
            index, seed = index
        path, label = self.samples[index]
        image = read_image(path)
        if self.transform is not None:
            if seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    image = self.transform(image)
        return image, label


class ShuffledBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled batches of `(index, augmentation seed)`, a pure function of (seed, epoch).

    An epoch is `batches_per_epoch` batches for the whole job (default: one pass over the
    images with the last partial batch dropped, at least one batch), rounded up to a multiple of
    `num_replicas`; rank r takes batches r, r + num_replicas, ... A set smaller than a batch
    is drawn again in a fresh order to fill it, so every batch has `batch_size` images (BatchNorm
    needs more than one).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if size < 1:
            raise KdasError("no images to sample from")
        if batch_size < 2:
            raise KdasError(f"batch_size must be >= 2 (BatchNorm needs it), got {batch_size}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise KdasError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise KdasError(f"bad DDP placement: rank {rank} of {num_replicas} replicas")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        total = batches_per_epoch or max(1, size // batch_size)
        self.batches_per_rank = math.ceil(total / num_replicas)
        self.epoch = 0

    def __len__(self) -> int:
        return self.batches_per_rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Every index the job's batches of `epoch` take, in order (fresh passes as needed)."""
        rng = np.random.default_rng([self.seed, epoch])
        needed = self.batches_per_rank * self.num_replicas * self.batch_size
        passes = [rng.permutation(self.size) for _ in range(math.ceil(needed / self.size))]
        return np.concatenate(passes)[:needed]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order(self.epoch)
        for offset in range(self.batches_per_rank):
            job_batch = self.rank + offset * self.num_replicas
            start = job_batch * self.batch_size
            yield [
                (int(i), item_seed(self.seed, self.epoch, job_batch, slot))
                for slot, i in enumerate(order[start : start + self.batch_size])
            ]
