"""One typed config for a whole run: data, teacher, search, student and deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdas.data.synthetic import SynthConfig
from kdas.engine.config import StudentTrainConfig, TeacherTrainConfig
from kdas.runtime.faiss_backend import DEFAULT_INDEX_TYPE
from kdas.search.config import SearchConfig

STAGES = (
    "data",
    "teacher",
    "search",
    "student",
    "evaluate",
    "export",
    "parity",
    "bench",
    "index",
    "report",
)


@dataclass
class DataStageConfig:
    root: str = "data/market1501"
    layout: str = "market1501"
    options: dict[str, Any] = field(default_factory=dict)
    synthesize: SynthConfig | None = None  # write a synthetic set at `root` when it is missing


@dataclass
class EvaluateStageConfig:
    flip: bool = False
    rerank: bool = False


@dataclass
class ExportStageConfig:
    opset: int = 18
    int8: bool = True  # CPU: static QDQ INT8 calibrated on training images
    calib_images: int = 256
    fp16: bool = False  # for GPUs
    tensorrt: Literal["off", "fp32", "fp16", "int8"] = "off"


@dataclass
class ParityStageConfig:
    num_images: int | None = None  # None: the whole query + gallery split


@dataclass
class BenchStageConfig:
    backends: tuple[str, ...] = ("torch", "torch-bf16", "onnx", "onnx-int8")
    batch: tuple[int, ...] = (1, 8)
    repeats: int = 20
    threads: int | None = None


@dataclass
class IndexStageConfig:
    type: Literal["flat", "ivf", "hnsw"] = DEFAULT_INDEX_TYPE
    model: Literal["fp32", "int8"] = "fp32"  # which exported student embeds the gallery


@dataclass
class PipelineConfig:
    name: str = "run"
    runs_dir: str = "runs"
    stages: tuple[str, ...] = STAGES
    data: DataStageConfig = field(default_factory=DataStageConfig)
    teacher: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    student: StudentTrainConfig = field(default_factory=StudentTrainConfig)
    evaluate: EvaluateStageConfig = field(default_factory=EvaluateStageConfig)
    export: ExportStageConfig = field(default_factory=ExportStageConfig)
    parity: ParityStageConfig = field(default_factory=ParityStageConfig)
    bench: BenchStageConfig = field(default_factory=BenchStageConfig)
    index: IndexStageConfig = field(default_factory=IndexStageConfig)
