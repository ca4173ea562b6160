"""Typed configs of the training stages; saved whole in each artifact's config.json.

Each default lives once: the loss settings in `kdas.losses.LossConfig`, the network's in
`kdas.models.spec`; a stage config composes them and overrides only what the stage changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdas.constants import DEFAULT_INPUT_SIZE, DEFAULT_LAYOUT, AutocastPrecision
from kdas.losses.config import LossConfig
from kdas.losses.distillation import KDSchedule
from kdas.models.spec import StudentArch, TeacherArch
from kdas.utils.config import bounded


@dataclass
class DataConfig:
    root: str = ""
    layout: str = DEFAULT_LAYOUT
    options: dict[str, Any] = field(default_factory=dict)  # layout options (variant, merge_val...)
    size: tuple[int, int] = bounded(DEFAULT_INPUT_SIZE, ge=4)  # (height, width)
    p: int = bounded(8, ge=2)  # identities per batch (batch-hard triplet: >= 2)
    k: int = bounded(4, ge=1)  # images per identity
    batches_per_epoch: int | None = bounded(None, ge=1)  # None: about one pass over the images
    num_workers: int = bounded(2, ge=0)
    skip_corrupt: bool = False
    flip_prob: float = bounded(0.5, ge=0, le=1)
    pad: int = bounded(10, ge=0)
    random_erasing: float = bounded(
        0.5, ge=0, le=1
    )  # teacher (BoT); search and student default to 0 (paper 4.2)
    # training identities held out as a validation split (epoch choice, monitoring); the same
    # data section gives the teacher, the search and the student the same training classes
    val_fraction: float = bounded(0.1, ge=0, lt=1)
    val_seed: int = 0


@dataclass
class OptimConfig:
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = bounded(3.5e-4, gt=0)
    weight_decay: float = bounded(5e-4, ge=0)
    momentum: float = bounded(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    # None: scaled to the run (10 % of the epochs, at most 10: the paper's 10 of 200); a
    # number is used as given
    warmup_epochs: int | None = bounded(None, ge=0)
    warmup_factor: float = bounded(0.01, gt=0, le=1)
    # None: BoT's 40 and 70 of 120 epochs, scaled to the run's length
    milestones: tuple[int, ...] | None = bounded(None, ge=0)
    gamma: float = bounded(0.1, gt=0)
    min_lr: float = bounded(0.0, ge=0)  # where cosine ends
    grad_clip: float | None = bounded(None, gt=0)


@dataclass
class RunConfig:
    epochs: int = bounded(60, ge=1)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: AutocastPrecision = "fp32"  # bf16 autocast on CPU or CUDA, fp16 CUDA
    channels_last: bool | None = None  # None: on CUDA only
    threads: int | None = bounded(None, ge=1)  # torch intra-op threads on CPU
    eval_every: int = bounded(
        10, ge=0
    )  # 0: evaluate once, at the end (on the validation split, if any)
    # the weights written: the last epoch's, or those of the evaluated epoch with the best
    # validation mAP (needs data.val_fraction > 0); the test split only ever sees those
    keep: Literal["last", "best-val"] = "last"
    eval_flip: bool = False
    eval_batch_size: int = bounded(64, ge=1)
    progress: bool = True


@dataclass
class TeacherTrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: TeacherArch = field(default_factory=TeacherArch)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class StudentTrainConfig:
    """Paper 4.2.2: Adam 3.5e-4, wd 5e-4, P×K 8×4, 200 epochs, the search's objective."""

    genotype: str = ""  # path to genotype.json
    teacher: str = ""  # teacher artifact folder ("" with loss.kd = "none")
    init: str = ""  # pre-trained weights to start from (`kdas pretrain`'s folder or file)
    data: DataConfig = field(default_factory=lambda: DataConfig(random_erasing=0.0))  # flip+crop
    model: StudentArch = field(default_factory=StudentArch)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=lambda: LossConfig(kd=KDSchedule("dynamic")))
    run: RunConfig = field(default_factory=lambda: RunConfig(epochs=200))


def with_data_set(section: Any, data: Any) -> Any:
    """A copy of a stage config (anything with a `.data` DataConfig) reading the data set that
    `data` names: its root, layout, layout options and validation hold-out. The pipeline and
    the ablation fill their stages this way, so every stage sees the same training classes."""
    import copy

    section = copy.deepcopy(section)
    section.data.root = data.root
    section.data.layout = data.layout
    section.data.options = dict(data.options)
    section.data.val_fraction = data.val_fraction
    section.data.val_seed = data.val_seed
    return section
