"""`kdas pipeline` end to end on a tiny config: every artifact exists and loads; reruns skip."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

import pytest

from kdas.cli.app import main
from kdas.errors import KdasError
from kdas.pipeline.config import PipelineConfig
from kdas.pipeline.runner import run_pipeline
from kdas.pipeline.stages import STAGE_FUNCTIONS
from kdas.utils.config import load_typed_config

TINY = """
name = "tiny"
runs_dir = "$runs"

[data]
root = "$data"
layout = "market1501"
[data.synthesize]
ids = 12
cameras = 3
images_per_camera = 3
size = [64, 32]
junk = 4
distractors = 4

[teacher]
data = { size = [32, 16], p = 4, k = 2, num_workers = 0 }
model = { name = "resnet18" }
optim = { optimizer = "sgd", lr = 0.05, warmup_epochs = 0 }
run = { epochs = 1, progress = false }

[search]
data = { size = [32, 16], p = 4, k = 2, batches_per_epoch = 1, num_workers = 0 }
model = { C = 4, layers = 3, reduction_positions = [1], steps = 2, multiplier = 2 }
run = { epochs = 1, progress = false }

[student]
data = { size = [32, 16], p = 4, k = 2, num_workers = 0 }
model = { C = 4, layers = 3, reduction_positions = [1] }
run = { epochs = 1, progress = false }

[export]
calib_images = 16

[bench]
backends = ["torch", "onnx", "onnx-int8", "tensorrt"]
batch = [1]
repeats = 2
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("pipeline")
    config = base / "tiny.toml"
    config.write_text(Template(TINY).substitute(runs=base / "runs", data=base / "data"))
    main(["pipeline", str(config)])
    return config, base / "runs" / "tiny"


def test_every_artifact_exists_and_loads(finished_run: tuple[Path, Path]) -> None:
    from kdas.models import load
    from kdas.models.genotype import load_genotype
    from kdas.runtime.index import GalleryIndex
    from kdas.runtime.session import read_model_info

    _, run = finished_run
    teacher, student = load(str(run / "teacher")), load(str(run / "student"))
    assert teacher.spec.kind == "teacher" and student.spec.kind == "student"
    assert load_genotype(run / "search" / "genotype.json") == load_genotype(student.spec.genotype)
    for picture in ("alphas.png", "schedule.png", "cell_normal.png", "cell_reduce.png"):
        assert (run / "search" / picture).stat().st_size > 0
    for role, loaded in (("teacher", teacher), ("student", student)):
        metrics = json.loads((run / "eval" / role / "metrics.json").read_text())["metrics"]
        assert 0 <= metrics["mAP"] <= 1
        info = read_model_info(run / "export" / f"{role}.onnx")
        assert info.weights_sha256 == loaded.weights_sha256 and info.model_kind == role
    assert read_model_info(run / "export" / "student.int8.onnx").precision == "int8"
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert set(parity) == {"student.onnx", "teacher.onnx", "student.int8.onnx"}
    assert all(report["passed"] for report in parity.values())
    bench = json.loads((run / "export" / "bench.json").read_text())
    assert "tensorrt" in bench["absent"]  # no GPU here: listed as absent, not faked
    assert {r["backend"] for r in bench["results"] if r["status"] == "ok"} == {
        "torch",
        "onnx",
        "onnx-int8",
    }
    assert (run / "export" / "bench.md").is_file() and (run / "export" / "bench.png").is_file()
    index = GalleryIndex.open(run / "index")
    assert index.info.weights_sha256 == student.weights_sha256
    report = (run / "report.html").read_text()
    for section in ("Teacher and student", "Search", "Parity", "Retrieval runtime", "Stages"):
        assert section in report, section
    assert report.count("data:image/png;base64,") >= 8
    state = json.loads((run / "pipeline.json").read_text())
    assert all(state[s]["status"] == "done" for s in STAGE_FUNCTIONS)


def test_rerun_skips_finished_stages_and_config_changes_rerun_downstream(
    finished_run: tuple[Path, Path],
) -> None:
    config, run = finished_run
    teacher_weights = run / "teacher" / "model.safetensors"
    student_weights = run / "student" / "model.safetensors"
    before = teacher_weights.stat().st_mtime_ns, student_weights.stat().st_mtime_ns
    cfg = load_typed_config(PipelineConfig, config)
    results = run_pipeline(cfg, STAGE_FUNCTIONS)
    assert (teacher_weights.stat().st_mtime_ns, student_weights.stat().st_mtime_ns) == before
    assert set(results) == set(STAGE_FUNCTIONS)

    cfg.student.run.epochs = 2  # the student and everything after it must run again
    run_pipeline(cfg, STAGE_FUNCTIONS)
    assert teacher_weights.stat().st_mtime_ns == before[0]
    assert student_weights.stat().st_mtime_ns != before[1]
    assert json.loads((run / "student" / "config.json").read_text())["config"]["run"]["epochs"] == 2


def test_failed_stage_stops_and_keeps_finished_ones(finished_run: tuple[Path, Path]) -> None:
    config, run = finished_run
    cfg = load_typed_config(PipelineConfig, config)
    cfg.bench.repeats = 3  # bench must run again, and fails

    def broken(ctx):
        raise KdasError("bench broke on purpose")

    stages = {**STAGE_FUNCTIONS, "bench": broken}
    with pytest.raises(KdasError, match="on purpose"):
        run_pipeline(cfg, stages)
    state = json.loads((run / "pipeline.json").read_text())
    assert state["bench"]["status"] == "failed" and "on purpose" in state["bench"]["error"]
    assert state["parity"]["status"] == "done" and (run / "student" / "config.json").is_file()


def test_pipeline_rejects_unknown_stage(tmp_path: Path) -> None:
    with pytest.raises(KdasError, match="unknown stage 'deploy'"):
        run_pipeline(PipelineConfig(runs_dir=str(tmp_path), stages=("deploy",)), STAGE_FUNCTIONS)


@pytest.mark.parametrize(
    "name", ["demo", "market1501_paper", "cuhk03", "msmt17", "dukemtmc", "ablation_demo"]
)
def test_example_configs_parse(name: str) -> None:
    from kdas.search.ablation import AblationConfig

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.toml"
    cls = AblationConfig if name.startswith("ablation") else PipelineConfig
    cfg = load_typed_config(cls, path)
    if cls is PipelineConfig:
        assert cfg.data.layout in {"market1501", "cuhk03", "msmt17", "dukemtmc"}
        paper = name != "demo"
        assert (cfg.student.model.C == 64) is paper and (cfg.search.model.C == 32) is paper


def _recording_stages(calls: list[tuple[str, bool]]) -> dict:
    """Stage functions that only record that they ran (and whether they were forced)."""
    from kdas.pipeline.config import STAGES

    def make(name: str):
        def stage(ctx):
            calls.append((name, ctx.force))
            return {"ran": name, "saw": sorted(ctx.results)}

        return stage

    return {name: make(name) for name in STAGES}


def test_runner_subsets_reruns_and_staleness(tmp_path: Path) -> None:
    from kdas.pipeline.config import STAGES

    calls: list[tuple[str, bool]] = []
    stages = _recording_stages(calls)
    cfg = PipelineConfig(name="r", runs_dir=str(tmp_path))
    run_pipeline(cfg, stages)
    assert [c[0] for c in calls] == list(STAGES)

    calls.clear()  # a subset of up-to-date stages: nothing but the report runs, nothing forced
    cfg.stages = ("student", "evaluate", "report")
    run_pipeline(cfg, stages)
    assert calls == [("report", False)]

    calls.clear()  # a later stage alone still sees the earlier stages' summaries
    cfg.stages = ("parity",)
    results = run_pipeline(cfg, stages, force=True)
    assert calls == [("parity", True)] and "export" in results["parity"]["saw"]

    calls.clear()  # parity ran again: everything after it is stale, everything before is not
    cfg.stages = STAGES
    run_pipeline(cfg, stages)
    assert [c[0] for c in calls] == ["bench", "index", "report"]

    calls.clear()  # a config change reruns that stage and the later ones over their old outputs
    cfg.bench.repeats += 1
    run_pipeline(cfg, stages)
    assert calls == [("bench", True), ("index", True), ("report", True)]
