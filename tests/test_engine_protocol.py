"""The protocol rules of training: schedules that fit the run, a validation split of training
identities for every choice, and a loud warning for a run that ended at chance."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdas.data.records import ImageRecord, ReIDSplits
from kdas.data.validation import held_out_count, hold_out_validation, validation_view
from kdas.engine.config import OptimConfig
from kdas.engine.optim import lr_factor_fn, milestones, schedule_notes, warmup_epochs
from kdas.engine.sanity import chance_warning
from kdas.errors import KdasError


def _splits(ids: int = 20, cameras: int = 3, per_camera: int = 2) -> ReIDSplits:
    train = [
        ImageRecord(f"/d/{pid:04d}_c{cam}_{i}.jpg", pid, cam)
        for pid in range(ids)
        for cam in range(cameras)
        for i in range(per_camera)
    ]
    query = [ImageRecord("/q/1.jpg", 1, 0)]
    gallery = [ImageRecord("/g/1.jpg", 1, 1), ImageRecord("/g/2.jpg", 2, 1)]
    return ReIDSplits("toy", "/d", train, query, gallery)


@pytest.mark.parametrize(("epochs", "expected"), [(1, 0), (6, 0), (20, 2), (60, 6), (200, 10)])
def test_auto_warmup_is_a_tenth_of_the_run_at_most_ten(epochs: int, expected: int) -> None:
    assert warmup_epochs(OptimConfig(), epochs) == expected


def test_a_fixed_warmup_is_kept_and_flagged_when_it_eats_the_run() -> None:
    cfg = OptimConfig(warmup_epochs=10)
    assert warmup_epochs(cfg, 200) == 10
    assert warmup_epochs(cfg, 6) == 5  # clamped so the last epoch runs at the full rate
    notes = schedule_notes(cfg, 6)
    assert len(notes) == 1 and "warmup_epochs = 10" in notes[0]
    assert schedule_notes(OptimConfig(), 6) == []


def test_six_epochs_reach_the_full_learning_rate() -> None:
    """The defect this fixes: the paper's 10-epoch ramp on a 6-epoch run never left it."""
    factor = lr_factor_fn(OptimConfig(), 6)
    assert factor(0) == pytest.approx(1.0)  # no warm-up, cosine starts at the base rate
    assert factor(5) == pytest.approx(0.0, abs=1e-12)  # and ends at min_lr = 0
    ramp = lr_factor_fn(OptimConfig(warmup_epochs=10), 200)
    assert ramp(0) == pytest.approx(0.01) and ramp(10) == pytest.approx(1.0)


def test_auto_milestones_scale_bot_to_the_run() -> None:
    assert milestones(OptimConfig(), 120) == (40, 70)
    assert milestones(OptimConfig(), 12) == (4, 7)
    assert milestones(OptimConfig(milestones=(3, 5)), 120) == (3, 5)
    factor = lr_factor_fn(OptimConfig(schedule="multistep", warmup_epochs=0), 12)
    assert [round(factor(e), 6) for e in (0, 3, 4, 6, 7, 11)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    late = OptimConfig(schedule="multistep", milestones=(40, 70))
    assert "never decays" in schedule_notes(late, 10)[0]


def test_validation_identities_leave_training_and_keep_cross_camera_queries() -> None:
    splits = _splits(ids=20)
    held = hold_out_validation(splits, 0.1, seed=3)
    train_files = {r.path for r in held.train}
    val_files = {r.path for r in (*held.val_query, *held.val_gallery)}
    assert not train_files & val_files
    assert train_files | val_files == {r.path for r in splits.train}
    assert held.num_train_pids == 18 and sorted({r.pid for r in held.train}) == list(range(18))
    assert len({r.pid for r in held.val_query}) == 2
    assert all(r.pid > 0 for r in (*held.val_query, *held.val_gallery))  # 0 means distractor
    for q in held.val_query:  # each query has a true match in another camera
        assert any(g.pid == q.pid and g.camid != q.camid for g in held.val_gallery)
    assert held.query == splits.query and held.gallery == splits.gallery
    view = validation_view(held)
    assert view.query == held.val_query and view.gallery == held.val_gallery


def test_the_split_depends_on_the_data_and_its_seed_only() -> None:
    splits = _splits(ids=30)
    shuffled = ReIDSplits("toy", "/d", list(reversed(splits.train)), [], [])
    a = hold_out_validation(splits, 0.2, seed=0)
    b = hold_out_validation(shuffled, 0.2, seed=0)
    assert {r.path for r in a.val_query} == {r.path for r in b.val_query}
    c = hold_out_validation(splits, 0.2, seed=1)
    assert {r.path for r in a.val_query} != {r.path for r in c.val_query}
    assert hold_out_validation(splits, 0.0) is splits


def test_validation_split_errors() -> None:
    with pytest.raises(KdasError, match=r"val_fraction must be in \[0, 1\)"):
        hold_out_validation(_splits(), 1.0)
    with pytest.raises(KdasError, match="leaving fewer than 2"):
        hold_out_validation(_splits(ids=3), 0.5)
    with pytest.raises(KdasError, match="one camera only"):
        hold_out_validation(_splits(ids=10, cameras=1), 0.2)
    assert held_out_count(100, 0.1) == 10 and held_out_count(5, 0.1) == 2


def test_chance_warning_names_the_run_and_its_recipe() -> None:
    gallery = [ImageRecord(f"/g/{i}.jpg", pid, 1) for i, pid in enumerate([0, 1, 2, 3, 4, 5])]
    assert chance_warning({"rank1": 0.9}, gallery, "the teacher", "6 epochs") is None
    warning = chance_warning({"rank1": 0.3}, gallery, "the teacher", "6 epochs, warm-up 0")
    assert warning is not None and "1/5" in warning and "6 epochs, warm-up 0" in warning
    assert "the teacher" in warning and "\n" not in warning
    assert chance_warning(None, gallery, "x", "y") is None


def test_best_val_needs_a_validation_split(tiny_market: Path, tmp_path: Path) -> None:
    from tiny_configs import teacher_config

    from kdas.engine.stages import train_teacher

    cfg = teacher_config(tiny_market, epochs=1)
    cfg.data.val_fraction = 0.0
    cfg.run.keep = "best-val"
    with pytest.raises(KdasError, match="there is none"):
        train_teacher(cfg, tmp_path / "t")


def test_too_many_identities_per_batch_names_the_validation_split(
    tiny_market: Path, tmp_path: Path
) -> None:
    from tiny_configs import teacher_config

    from kdas.engine.stages import train_teacher

    cfg = teacher_config(tiny_market, epochs=1)
    cfg.data.p = 8  # the tiny set has 8 training identities, 6 after the validation split
    with pytest.raises(KdasError, match="left after holding out 2 for validation"):
        train_teacher(cfg, tmp_path / "t")


def test_metrics_record_the_selection_and_test_once(tiny_market: Path, tmp_path: Path) -> None:
    import json

    from tiny_configs import teacher_config

    from kdas.engine.stages import train_teacher

    cfg = teacher_config(tiny_market, epochs=2)
    cfg.run.eval_every = 1
    result = train_teacher(cfg, tmp_path / "t")
    record = json.loads((tmp_path / "t" / "metrics.json").read_text())
    log = [json.loads(line) for line in (tmp_path / "t" / "log.jsonl").read_text().splitlines()]
    assert [sorted(r["eval"]) for r in log] == [sorted(record["selected"]["val"])] * 2
    assert record["selected"]["by"] == "last epoch" and record["selected"]["epoch"] == 1
    assert record["selected"]["val"] == pytest.approx(log[-1]["eval"])
    assert record["final"] == pytest.approx(result.metrics)
    assert "best" not in record and isinstance(record["warnings"], list)
    assert not (tmp_path / "t" / "checkpoints" / "best.safetensors").exists()


def test_the_report_shows_training_warnings_and_the_selection() -> None:
    from kdas.pipeline.report import _training_section, training_warnings

    train = {
        "teacher": {
            "epochs": 6,
            "selected": {
                "epoch": 3,
                "by": "best validation mAP",
                "val": {"rank1": 0.5, "mAP": 0.4},
            },
            "warnings": ["warning: the teacher ended at rank-1 0.010 <chance>"],
        },
        "student": {"epochs": 4, "selected": {"epoch": 3, "by": "last epoch", "val": None}},
    }
    facts = {"train": train}
    assert training_warnings(facts) == [
        "teacher: warning: the teacher ended at rank-1 0.010 <chance>"
    ]
    html = _training_section(facts)
    assert "best validation mAP" in html and "&lt;chance&gt;" in html  # escaped
    assert "<td>4</td>" in html and "40.0" in html  # the 4th epoch (1-based), val mAP in %
    assert _training_section({"train": {}}) == ""
