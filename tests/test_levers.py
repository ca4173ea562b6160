"""Levers against the student-teacher gap: feature-map distillation through a 1×1 adapter, and
the search's collapse signals (α entropy, skip/pool counts) with DARTS+ early stopping."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from crashes import crash_after_first_checkpoint
from genotypes import EVERY_OP
from safetensors.torch import load_file
from tiny_configs import TINY_ARCH, search_config, student_config, teacher_config

from kdas.engine.checkpoint import load_checkpoint
from kdas.engine.config import RunConfig
from kdas.engine.runner import EpochJob, EpochRunner, StepOutput
from kdas.engine.stages import train_student, train_teacher
from kdas.errors import KdasError
from kdas.files import LAST_CHECKPOINT, WEIGHTS_FILE
from kdas.losses import KDSchedule, LossConfig, ReIDObjective
from kdas.losses.feature import feature_map_loss
from kdas.models.genotype import Genotype
from kdas.models.student import StudentNetwork
from kdas.search.loop import run_search
from kdas.search.stability import alpha_entropy, early_stop_reason, op_counts

# ---------------------------------------------------------------- feature-map distillation


def test_feature_map_loss_is_the_mse_after_resizing() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4, 2), torch.randn(2, 3, 8, 4)
    expected = ((F.interpolate(student, size=(8, 4), mode="bilinear") - teacher) ** 2).mean()
    assert torch.allclose(feature_map_loss(student, teacher), expected)
    same = torch.randn(2, 3, 8, 4)
    assert torch.allclose(feature_map_loss(same, teacher), ((same - teacher) ** 2).mean())
    with pytest.raises(ValueError, match="channels"):
        feature_map_loss(torch.randn(2, 5, 8, 4), teacher)


def test_objective_adds_a_weighted_feature_term() -> None:
    torch.manual_seed(0)
    logits, features, targets = torch.randn(8, 4), torch.randn(8, 6), torch.arange(4).repeat(2)
    state = KDSchedule("none").at(0, 10)
    maps = (torch.randn(8, 3, 2, 2), torch.randn(8, 3, 2, 2))
    plain = ReIDObjective(LossConfig(), 10)(logits, features, targets, None, state)
    objective = ReIDObjective(LossConfig(lambda_feature=0.5), 10)
    out = objective(logits, features, targets, None, state, maps)
    assert "feature" not in plain.terms
    assert torch.allclose(out.terms["feature"], ((maps[0] - maps[1]) ** 2).mean())
    assert torch.allclose(out.total, plain.total + 0.5 * out.terms["feature"])
    assert objective.needs_teacher  # feature maps come from a teacher even with kd "none"
    with pytest.raises(ValueError, match="maps"):
        objective(logits, features, targets, None, state)


def test_forward_with_map_gives_the_backbone_map() -> None:
    torch.manual_seed(0)
    net = StudentNetwork(EVERY_OP, num_classes=5, arch=TINY_ARCH).train()
    x = torch.randn(4, 3, 32, 16)
    torch.manual_seed(1)
    logits, _f, feature_map = net(x, with_map=True)
    torch.manual_seed(1)
    assert torch.allclose(feature_map, net.forward_features(x))
    assert logits.shape == (4, 5) and feature_map.shape[1] == net.embedding_dim
    net.eval()
    assert net(x, with_map=True).shape == (4, net.embedding_dim)  # eval: the embedding only


def _feature_config(market: Path, teacher: Path, genotype: Path) -> Any:
    cfg = student_config(market, teacher, genotype)
    cfg.loss = LossConfig(kd=KDSchedule("none"), lambda_feature=1.0)
    return cfg


def test_feature_distillation_trains_checkpoints_and_resumes(
    tiny_market: Path,
    tiny_teacher: Path,
    genotype_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    straight = tmp_path / "straight"
    train_student(_feature_config(tiny_market, tiny_teacher, genotype_file), straight)
    log = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_feature"] > 0 for r in log) and log[0]["kd_weight"] == 0.0
    assert "adapter" in load_checkpoint(straight / LAST_CHECKPOINT)
    weights = load_file(str(straight / WEIGHTS_FILE))
    assert not any("adapter" in k for k in weights)  # the written student is the plain network

    crashed = tmp_path / "crashed"
    cfg = _feature_config(tiny_market, tiny_teacher, genotype_file)
    crash_after_first_checkpoint(monkeypatch, lambda: train_student(cfg, crashed))
    train_student(_feature_config(tiny_market, tiny_teacher, genotype_file), crashed, resume=True)
    resumed = load_file(str(crashed / WEIGHTS_FILE))
    for key, value in weights.items():
        assert torch.allclose(value, resumed[key], atol=1e-6), key


def test_feature_distillation_errors(
    tiny_market: Path, tiny_teacher: Path, genotype_file: Path, tmp_path: Path
) -> None:
    cfg = _feature_config(tiny_market, tiny_teacher, genotype_file)
    cfg.teacher = ""
    with pytest.raises(KdasError, match="lambda_feature = 1 distils feature maps"):
        train_student(cfg, tmp_path / "no-teacher")
    teacher = teacher_config(tiny_market, epochs=1)
    teacher.loss.lambda_feature = 1.0
    with pytest.raises(KdasError, match="teacher trains on labels"):
        train_teacher(teacher, tmp_path / "teacher")
    search = search_config(tiny_market, tiny_teacher, epochs=1)
    search.loss.lambda_feature = 1.0
    with pytest.raises(KdasError, match="retraining option"):
        run_search(search, tmp_path / "search")
    assert not (tmp_path / "search").exists()  # refused before anything is written


# ---------------------------------------------------------------- search stability


def test_alpha_entropy_and_op_counts() -> None:
    assert alpha_entropy(torch.full((5, 7), 1 / 7)) == pytest.approx(1.0)
    one_hot = torch.eye(7)[:5]
    assert alpha_entropy(one_hot) == pytest.approx(0.0, abs=1e-9)
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert alpha_entropy(p) == pytest.approx(math.log(2) / math.log(4))
    pairs = [("skip_connect", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 0), ("sep_conv_3x3", 1)]
    assert op_counts(pairs) == {"skip": 1, "pool": 2}


def test_early_stop_reason() -> None:
    record = {"alpha_op_count": {"normal": {"skip": 2, "pool": 0}}}
    assert early_stop_reason(record, None) is None
    assert early_stop_reason(record, 3) is None
    assert "2 skip connections" in early_stop_reason(record, 2)


class _CountingJob(EpochJob):
    """Stops after `stop_after` epochs; its state is the number of steps taken."""

    def __init__(self, stop_after: int) -> None:
        self.stop_after, self.steps = stop_after, 0

    def steps_per_epoch(self) -> int:
        return 2

    def batches(self, epoch: int) -> Any:
        return range(2)

    def step(self, batch: Any, epoch: int) -> StepOutput:
        self.steps += 1
        return StepOutput({"total": 1.0}, 1)

    def end_epoch(self, epoch: int, means: dict[str, float]) -> dict[str, Any]:
        return {}

    def stop_reason(self, record: dict[str, Any]) -> str | None:
        return "enough" if record["epoch"] + 1 >= self.stop_after else None

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


def test_runner_stops_early_and_a_resume_stays_stopped(tmp_path: Path) -> None:
    run = RunConfig(epochs=5, progress=False, eval_every=0)
    out = tmp_path / "job"
    job = _CountingJob(stop_after=2)
    summary = EpochRunner.open(run, out, "log.jsonl", False, False).fit(job, False, "k")
    assert (summary.epochs, summary.stopped, job.steps) == (2, "enough", 4)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and log[-1]["stopped"] == "enough"
    again = _CountingJob(stop_after=99)
    summary = EpochRunner.open(run, out, "log.jsonl", True, False).fit(again, True, "k")
    assert (summary.epochs, summary.stopped, again.steps) == (2, "enough", 4)


def test_search_records_collapse_signals_and_stops_early(
    tiny_market: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    cfg = search_config(tiny_market, tiny_teacher, epochs=3)
    cfg.ops = ("none", "skip_connect")  # the only op a genotype can hold is a skip
    cfg.early_stop_skips = 1
    cfg.data.batches_per_epoch = 1
    result = run_search(cfg, tmp_path / "s")
    history = result.history
    first = history[0]
    assert 0.9 < first["alpha_entropy"]["normal"] <= 1.0  # α starts near uniform
    assert first["alpha_op_count"]["normal"] == {"skip": 4, "pool": 0}  # 2 nodes x 2 edges
    assert len(history) == 1 and "4 skip connections" in result.stopped
    assert history[0]["stopped"] == result.stopped
    assert (tmp_path / "s" / "stability.png").stat().st_size > 1000
    assert isinstance(result.genotype, Genotype)
