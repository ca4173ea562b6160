"""One typed config for a whole run: data, teacher, search, student and deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdas.constants import DEFAULT_LAYOUT, ONNX_OPSET, ExportPrecision
from kdas.data.synthetic import SynthConfig
from kdas.engine.config import DataConfig, StudentTrainConfig, TeacherTrainConfig
from kdas.export.backends import OPENVINO_BACKENDS
from kdas.export.bench import BenchConfig
from kdas.export.calibration import CALIBRATION_IMAGES
from kdas.runtime.faiss_backend import DEFAULT_INDEX_TYPE
from kdas.search.config import SearchConfig

OpenVINOPrecision = Literal["fp32", "bf16", "int8"]  # kdas.export.openvino_export's precisions

STAGES = (
    "data",
    "teacher",
    "latency",
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
class LatencyStageConfig:
    """How the pipeline profiles its latency table when `[search.latency]` sets a target but no
    table: on this backend, at the student's input size and width, for the search's op set,
    macro structure and teacher (those come from their own sections, so they are said once)."""

    backend: str = "openvino-int8"
    threads: int = 2
    batch: int = 1
    repeats: int = 25
    warmup: int = 5
    fit_networks: int = 4  # whole random networks measured to fit the sum's linear correction


@dataclass
class ReportStageConfig:
    # other runs (folders in runs_dir, e.g. the same recipe at other latency targets) whose
    # students join this run's in the report's accuracy-against-latency plot
    pareto_runs: tuple[str, ...] = ()


@dataclass
class DataStageConfig:
    root: str = "data/market1501"
    layout: str = DEFAULT_LAYOUT
    options: dict[str, Any] = field(default_factory=dict)
    synthesize: SynthConfig | None = None  # write a synthetic set at `root` when it is missing
    # the validation identities, one split for the teacher, the search and the student (their
    # own data sections' values are replaced by these)
    val_fraction: float = DataConfig.val_fraction
    val_seed: int = DataConfig.val_seed


@dataclass
class EvaluateStageConfig:
    flip: bool = False
    rerank: bool = False


@dataclass
class ExportStageConfig:
    opset: int = ONNX_OPSET
    int8: bool = True  # CPU: static QDQ INT8 calibrated on training images
    calib_images: int = CALIBRATION_IMAGES
    fp16: bool = False  # for GPUs
    tensorrt: Literal["off", ExportPrecision] = "off"
    # OpenVINO IRs of student and teacher, in these precisions; bf16 is skipped, with one line
    # in the log, on a CPU without bf16 (AMX / avx512_bf16), so the default asks for it
    # everywhere and gets fp32 + int8 where it is missing
    openvino: bool = False
    openvino_precisions: tuple[OpenVINOPrecision, ...] = ("fp32", "bf16", "int8")


@dataclass
class ParityStageConfig:
    num_images: int | None = None  # None: the whole query + gallery split


@dataclass
class BenchStageConfig:
    """The bench stage: `kdas bench`'s defaults (BenchConfig) with two overrides, so a run ends
    soon on a CPU: no TensorRT (it needs a GPU, and would only be listed as absent) and no
    batch of 32 (the teacher's slowest measurement). Set either here to bring them back.
    The OpenVINO backends are not listed: the stage adds those of the IRs `[export] openvino`
    wrote, so turning OpenVINO on is one switch and measures exactly what was exported."""

    backends: tuple[str, ...] = tuple(
        b for b in BenchConfig.backends if b != "tensorrt" and b not in OPENVINO_BACKENDS
    )
    batch: tuple[int, ...] = (1, 8)
    repeats: int = BenchConfig.repeats
    threads: int | None = BenchConfig.threads


@dataclass
class IndexStageConfig:
    type: Literal["flat", "ivf", "hnsw"] = DEFAULT_INDEX_TYPE
    model: Literal["fp32", "int8"] = "fp32"  # which exported student embeds the gallery


@dataclass
class PipelineConfig:
    name: str = "run"
    runs_dir: str = "runs"
    stages: tuple[str, ...] = STAGES
    latency: LatencyStageConfig = field(default_factory=LatencyStageConfig)
    data: DataStageConfig = field(default_factory=DataStageConfig)
    teacher: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    student: StudentTrainConfig = field(default_factory=StudentTrainConfig)
    evaluate: EvaluateStageConfig = field(default_factory=EvaluateStageConfig)
    export: ExportStageConfig = field(default_factory=ExportStageConfig)
    parity: ParityStageConfig = field(default_factory=ParityStageConfig)
    bench: BenchStageConfig = field(default_factory=BenchStageConfig)
    index: IndexStageConfig = field(default_factory=IndexStageConfig)
    report: ReportStageConfig = field(default_factory=ReportStageConfig)
