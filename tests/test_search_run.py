"""A tiny search on synthetic data, end to end: genotype, logs, pictures, resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_configs import search_config

from kdas.cli.app import main
from kdas.errors import KdasError
from kdas.models.artifacts import save_model_artifact
from kdas.models.genotype import load_genotype
from kdas.models.spec import ModelSpec, TeacherArch
from kdas.models.teacher import build_teacher
from kdas.search import loop


def test_search_end_to_end(tiny_market: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    result = loop.run_search(search_config(tiny_market, tiny_teacher), straight)
    genotype = load_genotype(straight / "genotype.json")
    assert genotype == result.genotype
    assert len(genotype.normal) == 4 and len(genotype.reduce) == 4  # two nodes, two edges each
    history = [json.loads(x) for x in (straight / "alphas.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0]["temperature"] == 2.0 and history[1]["temperature"] < 2.0
    assert history[0]["kd_weight"] == 1.0
    for h in history:
        assert {"alphas", "genotype", "skip_count", "losses"} <= set(h)
        rows = torch.tensor(h["alphas"]["normal"])
        assert torch.allclose(rows.sum(1), torch.ones(len(rows)), atol=1e-5)
        assert "val_total" in h["losses"] and "train_kd" in h["losses"]
    for picture in ("alphas.png", "schedule.png", "cell_normal.png", "cell_reduce.png"):
        assert (straight / picture).stat().st_size > 1000, picture
    doc = json.loads((straight / "genotype.json").read_text())
    assert doc["format"] == "kdas-genotype" and doc["search_config"]["model"]["C"] == 4


def test_second_order_search_runs(tiny_market: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    cfg = search_config(tiny_market, tiny_teacher, epochs=1, order=2)
    cfg.data.batches_per_epoch = 1
    result = loop.run_search(cfg, tmp_path / "s2")
    assert load_genotype(tmp_path / "s2" / "genotype.json") == result.genotype


def test_search_needs_a_matching_teacher(tiny_market: Path, tmp_path: Path) -> None:
    cfg = search_config(tiny_market, tmp_path / "none")
    cfg.teacher = ""
    with pytest.raises(KdasError, match="needs --teacher"):
        loop.run_search(cfg, tmp_path / "s")
    spec = ModelSpec("teacher", 3, input_size=(32, 16), teacher=TeacherArch("resnet18"))
    wrong = save_model_artifact(tmp_path / "wrong", build_teacher(3, "resnet18"), spec, "teacher")
    cfg.teacher = str(wrong)
    with pytest.raises(KdasError, match="knows 3 identities"):
        loop.run_search(cfg, tmp_path / "s")


def test_cli_search_without_distillation(tiny_market: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "search.yaml"
    config.write_text(
        "data: {size: [32, 16], p: 4, k: 2, batches_per_epoch: 1, num_workers: 0}\n"
        "model: {C: 4, layers: 2, reduction_positions: [1], steps: 2, multiplier: 2}\n"
        "run: {epochs: 1, progress: false}\n"
    )
    out = tmp_path / "search"
    main(
        [
            "search",
            "--data",
            str(tiny_market),
            "--layout",
            "market1501",
            "--kd",
            "none",
            "--out",
            str(out),
            "--config",
            str(config),
            "--max-skips",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert "normal:" in printed and "genotype.json" in printed
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["loss"]["kd"]["mode"] == "none" and saved["max_skip_normal"] == 1
    assert sum(op == "skip_connect" for op, _ in load_genotype(out / "genotype.json").normal) <= 1


def test_search_under_torchrun_two_gloo_processes(
    tiny_market: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "search.yaml"
    config.write_text(
        "data: {size: [32, 16], p: 4, k: 2, batches_per_epoch: 2, num_workers: 0}\n"
        "model: {C: 4, layers: 2, reduction_positions: [1], steps: 2, multiplier: 2}\n"
        "run: {epochs: 2, progress: false, device: cpu}\n"
    )
    out = tmp_path / "search"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "kdas", "search",
        "--teacher", str(tiny_teacher), "--data", str(tiny_market), "--out", str(out),
        "--config", str(config),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("genotype ->") == 1  # only rank 0 reports
    history = [json.loads(x) for x in (out / "alphas.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]  # one writer
    load_genotype(out / "genotype.json")


def test_search_with_a_custom_primitive_set(
    tiny_market: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    cfg = search_config(tiny_market, tiny_teacher, epochs=1)
    cfg.data.batches_per_epoch = 1
    cfg.ops = ("none", "skip_connect", "sep_conv_3x3", "part_aware")
    loop.run_search(cfg, tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "genotype.json").read_text())
    assert doc["primitives"] == list(cfg.ops)
    assert torch.tensor(doc["alphas"]["normal"]).shape == (5, 4)  # 2 nodes: 5 edges
    ops = {op for op, _ in doc["normal"] + doc["reduce"]}
    assert ops <= {"skip_connect", "sep_conv_3x3", "part_aware"}
    history = json.loads((tmp_path / "s" / "alphas.jsonl").read_text().splitlines()[0])
    assert history["genotype"]["primitives"] == list(cfg.ops)
    assert (tmp_path / "s" / "alphas.png").stat().st_size > 1000
