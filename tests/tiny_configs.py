"""The tiny stage configs the engine, search and student tests share: a few 2-batch epochs on
the session's tiny synthetic set, so every loop runs in seconds."""

from __future__ import annotations

from pathlib import Path

from kdas.engine.config import (
    DataConfig,
    OptimConfig,
    RunConfig,
    StudentTrainConfig,
    TeacherTrainConfig,
)
from kdas.losses import KDSchedule, LossConfig
from kdas.models.spec import StudentArch, TeacherArch
from kdas.search.config import SearchConfig, SearchOptimConfig, SupernetConfig

TINY_ARCH = StudentArch(C=4, layers=3, reduction_positions=(1,))


def tiny_data(root: Path, size: tuple[int, int] = (32, 16)) -> DataConfig:
    return DataConfig(root=str(root), size=size, p=4, k=2, batches_per_epoch=2, num_workers=0)


def teacher_config(root: Path, epochs: int = 2) -> TeacherTrainConfig:
    return TeacherTrainConfig(
        data=tiny_data(root, size=(64, 32)),
        model=TeacherArch(name="resnet18", last_stride=1),
        optim=OptimConfig(optimizer="adam", lr=3.5e-4, warmup_epochs=1),
        run=RunConfig(epochs=epochs, eval_every=0, eval_batch_size=16, progress=False),
    )


def search_config(root: Path, teacher: Path, epochs: int = 2, order: int = 1) -> SearchConfig:
    return SearchConfig(
        teacher=str(teacher),
        data=tiny_data(root),
        model=SupernetConfig(C=4, layers=2, reduction_positions=(1,), steps=2, multiplier=2),
        optim=SearchOptimConfig(order=order),
        loss=LossConfig(kd=KDSchedule("dynamic")),
        run=RunConfig(epochs=epochs, progress=False, eval_every=0),
    )


def student_config(
    root: Path, teacher: Path, genotype: Path, epochs: int = 2
) -> StudentTrainConfig:
    return StudentTrainConfig(
        genotype=str(genotype),
        teacher=str(teacher),
        data=tiny_data(root),
        model=TINY_ARCH,
        optim=OptimConfig(lr=1e-3, warmup_epochs=1),
        loss=LossConfig(kd=KDSchedule("dynamic")),
        run=RunConfig(epochs=epochs, eval_every=0, progress=False),
    )
