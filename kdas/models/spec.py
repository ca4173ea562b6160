"""The typed description of a model: enough to rebuild it, saved in every artifact's config.

The network-structure dataclasses hold the one copy of their defaults; the constructors of
`Supernet` and `StudentNetwork` take them whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from kdas.constants import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD
from kdas.utils.config import bounded, from_dict


@dataclass
class TeacherArch:
    name: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"
    last_stride: int = bounded(1, ge=1, le=2)
    imagenet_weights: str | None = None  # a local torchvision .pth / .safetensors file
    zero_init_residual: bool = False  # last BN of each residual block at γ = 0 (from scratch)


@dataclass
class MacroConfig:
    """The cell stack the supernet and the student share (`kdas.models.macro.CellStack`).

    C is the channel count of the first cells (doubled at each reduction cell); it has no default
    here because the supernet is searched narrower than the student is trained, so each network
    states its own. Subclasses keep the flat JSON shape of the saved configs.
    """

    C: int
    layers: int = bounded(8, ge=1)
    reduction_positions: tuple[int, ...] = bounded(
        (2, 4, 6), ge=0
    )  # 0-based: the 3rd, 5th and 7th cells
    stem_multiplier: int = bounded(3, ge=1)


@dataclass
class StudentArch(MacroConfig):
    C: int = bounded(64, ge=1)
    drop_path_prob: float = bounded(0.0, ge=0, lt=1)  # the engine schedules it during training


@dataclass
class SupernetArch(MacroConfig):
    """The supernet's structure; the primitive set is the search's choice (`SupernetConfig`)."""

    C: int = bounded(32, ge=1)
    steps: int = bounded(4, ge=1)  # intermediate nodes per cell
    multiplier: int = bounded(4, ge=1)  # the cell output concatenates the last `multiplier` nodes


Arch = TypeVar("Arch", bound=MacroConfig)


def arch_of(cls: type[Arch], arch: MacroConfig | Mapping[str, Any] | None) -> Arch:
    """`arch` as exactly a `cls`: its defaults for None, a JSON table checked field by field, or
    the `cls` fields of a dataclass that has them (a stage config that extends the arch)."""
    if arch is None:
        return cls()
    if isinstance(arch, Mapping):
        return from_dict(cls, arch, where=cls.__name__)
    return cls(**{f.name: getattr(arch, f.name) for f in dataclasses.fields(cls)})


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
