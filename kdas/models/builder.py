"""One function from a ModelSpec to a network, so every stage builds models the same way."""

from __future__ import annotations

from kdas.errors import KdasError
from kdas.models.head import ReIDModel
from kdas.models.spec import ModelSpec


def build_model(spec: ModelSpec, load_imagenet: bool = True) -> ReIDModel:
    """Build the network a spec describes (untrained; artifacts load their weights after)."""
    if spec.kind == "teacher":
        from kdas.models.teacher import build_teacher

        arch = spec.teacher
        if arch is None:
            raise KdasError("teacher spec without its `teacher` architecture section")
        return build_teacher(
            spec.num_classes,
            arch=arch.name,
            last_stride=arch.last_stride,
            imagenet_weights=arch.imagenet_weights if load_imagenet else None,
            zero_init_residual=arch.zero_init_residual,
        )
    if spec.kind == "student":
        from kdas.models.student import StudentNetwork

        if spec.student is None or spec.genotype is None:
            raise KdasError("student spec needs its `student` architecture and its `genotype`")
        return StudentNetwork(spec.genotype, spec.num_classes, spec.student)
    raise KdasError(f"unknown model kind {spec.kind!r} (teacher or student)")
