"""The typed description of a model: enough to rebuild it, saved in every artifact's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdas.constants import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD


@dataclass
class TeacherArch:
    name: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"
    last_stride: int = 1
    imagenet_weights: str | None = None  # a local torchvision .pth / .safetensors file


@dataclass
class StudentArch:
    C: int = 64
    layers: int = 8
    reduction_positions: tuple[int, ...] = (2, 4, 6)  # 0-based: the 3rd, 5th and 7th cells
    stem_multiplier: int = 3
    drop_path_prob: float = 0.0


@dataclass
class ModelSpec:
    kind: Literal["teacher", "student"]
    num_classes: int
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    teacher: TeacherArch | None = None
    student: StudentArch | None = None
    genotype: dict[str, Any] | None = field(default=None)  # the student's genotype JSON
