"""Retraining the static student: artifacts, distillation, resume, CLI, the ablation command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from genotypes import EVERY_OP
from tiny_configs import TINY_ARCH, student_config

from kdas.cli.app import main
from kdas.engine.config import DataConfig, RunConfig, StudentTrainConfig
from kdas.engine.stages import train_student
from kdas.errors import KdasError
from kdas.models import load
from kdas.models.artifacts import save_model_artifact
from kdas.models.genotype import genotype_to_dict
from kdas.models.spec import ModelSpec
from kdas.models.student import StudentNetwork
from kdas.search.ablation import AblationConfig, run_ablation
from kdas.search.config import SearchConfig, SupernetConfig


def test_student_artifact_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = StudentNetwork(EVERY_OP, num_classes=5, arch=TINY_ARCH)
    net.train()
    net(torch.randn(4, 3, 32, 16))  # non-trivial BN statistics
    net.eval()
    spec = ModelSpec(
        "student", 5, input_size=(32, 16), student=TINY_ARCH, genotype=genotype_to_dict(EVERY_OP)
    )
    save_model_artifact(tmp_path / "student", net, spec, "student")
    loaded = load(str(tmp_path / "student"))
    x = torch.randn(3, 3, 32, 16)
    assert torch.allclose(loaded.model(x), net(x), atol=1e-6)
    assert loaded.spec.kind == "student"


def test_retraining_distils(
    tiny_market: Path, tiny_teacher: Path, genotype_file: Path, tmp_path: Path
) -> None:
    straight = tmp_path / "straight"
    result = train_student(student_config(tiny_market, tiny_teacher, genotype_file), straight)
    assert result.metrics is not None and 0.0 <= result.metrics["mAP"] <= 1.0
    log = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert log[0]["kd_weight"] == 1.0 and log[0]["temperature"] == 2.0
    assert log[0]["loss_kd"] > 0
    config = json.loads((straight / "config.json").read_text())
    assert config["model"]["genotype"]["normal"][1] == ["part_aware", 1]
    assert config["teacher"] == str(tiny_teacher)
    assert json.loads((straight / "genotype.json").read_text())["format"] == "kdas-genotype"
    params = config["facts"]["parameters"]
    assert params["total"] == params["backbone"] + params["head"]


def test_student_errors(tiny_market: Path, genotype_file: Path, tmp_path: Path) -> None:
    cfg = student_config(tiny_market, tmp_path, genotype_file)
    cfg.teacher = ""
    with pytest.raises(KdasError, match="needs --teacher"):
        train_student(cfg, tmp_path / "s")
    cfg.genotype = str(tmp_path / "missing.json")
    with pytest.raises(KdasError, match=r"missing\.json"):
        train_student(cfg, tmp_path / "s")


def test_cli_train_then_info(
    tiny_market: Path, tiny_teacher: Path, genotype_file: Path, tmp_path: Path, capsys
) -> None:
    config = tmp_path / "student.toml"
    config.write_text(
        "[data]\nsize = [32, 16]\np = 4\nk = 2\nbatches_per_epoch = 1\nnum_workers = 0\n"
        "[model]\nC = 4\nlayers = 3\nreduction_positions = [1]\n"
        "[run]\nepochs = 1\nprogress = false\n"
    )
    out = tmp_path / "student"
    main(
        [
            "train",
            "--genotype",
            str(genotype_file),
            "--teacher",
            str(tiny_teacher),
            "--data",
            str(tiny_market),
            "--layout",
            "market1501",
            "--out",
            str(out),
            "--config",
            str(config),
        ]
    )
    assert "student: rank-1" in capsys.readouterr().out
    main(["info", str(out)])
    printed = capsys.readouterr().out
    assert "part_aware@1" in printed and "FLOPs" in printed and "dynamic" in printed


def test_ablation_table(tiny_market: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    data = DataConfig(
        root=str(tiny_market), size=(32, 16), p=4, k=2, batches_per_epoch=1, num_workers=0
    )
    search = SearchConfig(
        teacher=str(tiny_teacher),
        data=data,
        model=SupernetConfig(C=4, layers=3, reduction_positions=(1,), steps=2, multiplier=2),
        run=RunConfig(epochs=1, progress=False),
    )
    student = StudentTrainConfig(
        teacher=str(tiny_teacher),
        data=data,
        model=TINY_ARCH,
        run=RunConfig(epochs=1, eval_every=0, progress=False),
    )
    cfg = AblationConfig(search=search, student=student, seeds=2)
    rows = run_ablation(cfg, tmp_path / "ablation")
    assert [r["mode"] for r in rows] == ["none", "constant", "dynamic"]
    assert all(r["runs"] == 2 and 0 <= r["mAP"] <= 1 for r in rows)
    table = (tmp_path / "ablation" / "ablation.md").read_text()
    assert table.count("±") >= 15 and "Dynamic Temperature" in table
    csv_lines = (tmp_path / "ablation" / "ablation.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 6
    assert (tmp_path / "ablation" / "ablation.png").stat().st_size > 1000
    # the search ran with each mode's own distillation
    saved = json.loads((tmp_path / "ablation/constant/seed1/search/config.json").read_text())
    assert saved["config"]["loss"]["kd"]["mode"] == "constant"
    assert saved["config"]["run"]["seed"] == 1
    weights = tmp_path / "ablation/dynamic/seed0/student/model.safetensors"
    before = weights.stat().st_mtime_ns
    run_ablation(cfg, tmp_path / "ablation")  # finished runs are reused, not redone
    assert weights.stat().st_mtime_ns == before
