"""Image transforms for training and evaluation (torchvision.transforms.v2).

The eval transform is a contract: PIL `.convert("RGB")`, PIL bilinear resize to (W, H), float32
in [0, 1], ImageNet normalisation, CHW. The torch-free runtime re-implements exactly this in
PIL + numpy, so do not change it without changing `kdas/runtime` too.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from kdas.constants import IMAGENET_MEAN, IMAGENET_STD
from kdas.errors import KdasError


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise KdasError(f"input size must be positive (height, width), got {tuple(size)}")
    return height, width


def _to_normalized_tensor() -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
    ]


def build_eval_transform(size: tuple[int, int]) -> v2.Compose:
    """PIL image -> normalised CHW float32 tensor of `size` (height, width)."""
    height, width = _check_size(size)
    return v2.Compose(
        [
            v2.RGB(),
            v2.Resize((height, width), interpolation=InterpolationMode.BILINEAR),
            *_to_normalized_tensor(),
        ]
    )


def build_train_transform(
    size: tuple[int, int],
    flip_prob: float = 0.5,
    pad: int = 10,
    random_erasing_prob: float = 0.5,
) -> v2.Compose:
    """The usual Re-ID augmentation: resize, flip, pad and crop back, normalise, erase.

    Random erasing comes last, on the normalised tensor, filling with 0 (the data set mean).
    """
    height, width = _check_size(size)
    for name, prob in (("flip_prob", flip_prob), ("random_erasing_prob", random_erasing_prob)):
        if not 0.0 <= prob <= 1.0:
            raise KdasError(f"{name} must be in [0, 1], got {prob}")
    if pad < 0:
        raise KdasError(f"pad must be >= 0, got {pad}")
    steps: list[v2.Transform] = [
        v2.RGB(),
        v2.Resize((height, width), interpolation=InterpolationMode.BILINEAR),
        v2.RandomHorizontalFlip(p=flip_prob),
    ]
    if pad > 0:
        steps.append(v2.RandomCrop((height, width), padding=pad, fill=0))
    steps += _to_normalized_tensor()
    if random_erasing_prob > 0:
        steps.append(v2.RandomErasing(p=random_erasing_prob, value=0.0))
    return v2.Compose(steps)
