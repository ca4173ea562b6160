"""Tiny model folders for the export tests (not a test module itself).

A ResNet-18 teacher at 64x32 and a C=4 student whose genotype uses every op (the same one the
models tests use), each saved with `save_model_artifact` as a stage would save it. BatchNorm
statistics are adapted to real images (train-mode forward passes, no gradient steps), so the
activations that INT8 calibration sees look like a deployed model's, in a second instead of
the minutes training would take on a shared 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import torch
from genotypes import EVERY_OP

from kdas.models.artifacts import save_model_artifact
from kdas.models.batchnorm import adapt_batchnorm
from kdas.models.genotype import genotype_to_dict
from kdas.models.spec import ModelSpec, StudentArch, TeacherArch

TEACHER_SIZE = (64, 32)
STUDENT_SIZE = (128, 64)  # the part-aware op needs >= 4 rows after the last reduction


def data_images(root: Path, size: tuple[int, int], count: int = 64) -> torch.Tensor:
    """The first `count` training images of a Market-layout data set, eval-transformed."""
    from kdas.data.dataset import read_image
    from kdas.data.layouts import load_dataset
    from kdas.data.transforms import build_eval_transform

    transform = build_eval_transform(size)
    records = load_dataset(str(root), "market1501").train[:count]
    return torch.stack([transform(read_image(r.path)) for r in records])


def save_teacher(out: Path, images: torch.Tensor | None = None, seed: int = 0) -> Path:
    from kdas.models.teacher import build_teacher

    torch.manual_seed(seed)
    net = build_teacher(5, "resnet18")
    if images is None:
        images = torch.randn(32, 3, *TEACHER_SIZE) * 1.5 + 0.2
    adapt_batchnorm(net, images, chunk=32)
    spec = ModelSpec(
        kind="teacher", num_classes=5, input_size=TEACHER_SIZE, teacher=TeacherArch("resnet18")
    )
    return save_model_artifact(out, net, spec, "teacher")


def save_student(out: Path, seed: int = 0) -> Path:
    from kdas.models.student import StudentNetwork

    torch.manual_seed(seed)
    net = StudentNetwork(EVERY_OP, num_classes=5, arch=StudentArch(C=4))
    adapt_batchnorm(net, torch.randn(8, 3, *STUDENT_SIZE) * 1.5 + 0.2, chunk=32)
    spec = ModelSpec(
        kind="student",
        num_classes=5,
        input_size=STUDENT_SIZE,
        student=StudentArch(C=4),
        genotype=genotype_to_dict(EVERY_OP),
    )
    return save_model_artifact(out, net, spec, "student")
