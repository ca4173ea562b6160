"""Shared fixtures: one tiny synthetic data set in the Market-1501 layout for the whole session,
the artifacts made from it, and a one-thread torch setting for the model tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic Market-1501-layout data set (small images, few ids), made once."""
    from kdas.data.synthetic import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("tiny_market")
    return synthesize(
        out, SynthConfig(ids=16, cameras=3, images_per_camera=3, size=(64, 32), seed=0)
    )


@pytest.fixture(scope="session")
def tiny_teacher(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) ResNet-18 teacher artifact that knows the tiny set's training classes."""
    import torch

    from kdas.engine.config import DataConfig
    from kdas.engine.stages import load_splits
    from kdas.models.artifacts import save_model_artifact
    from kdas.models.spec import ModelSpec, TeacherArch
    from kdas.models.teacher import build_teacher

    # the training classes every stage sees: validation identities held out as by default
    classes = load_splits(DataConfig(root=str(tiny_market))).num_train_pids
    spec = ModelSpec("teacher", classes, input_size=(32, 16), teacher=TeacherArch("resnet18"))
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    return save_model_artifact(out, build_teacher(classes, "resnet18"), spec, "teacher")


@pytest.fixture(scope="session")
def genotype_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genotype.json that uses every op of the paper's space."""
    from genotypes import EVERY_OP

    from kdas.models.genotype import save_genotype

    path = tmp_path_factory.mktemp("genotype") / "genotype.json"
    save_genotype(path, EVERY_OP)
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """For modules of hundreds of tiny kernels (`pytestmark = pytest.mark.usefixtures(...)`):
    thread hand-offs cost more than they save on a shared CPU."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
