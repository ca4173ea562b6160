"""The one epoch runner: a crash after any epoch, then `--resume`, gives the same final state as
an uninterrupted run, for every job that runs through it (teacher, student, search)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from crashes import crash_after_first_checkpoint
from safetensors.torch import load_file
from tiny_configs import search_config, student_config, teacher_config

from kdas.engine.checkpoint import load_checkpoint
from kdas.engine.runner import wants_eval
from kdas.engine.stages import train_student, train_teacher
from kdas.errors import KdasError
from kdas.files import LAST_CHECKPOINT, SEARCH_LOG, TRAIN_LOG, WEIGHTS_FILE
from kdas.search.loop import run_search


def _teacher(market: Path, teacher: Path, genotype: Path) -> Callable[..., object]:
    return lambda out, **kw: train_teacher(teacher_config(market), out, **kw)


def _student(market: Path, teacher: Path, genotype: Path) -> Callable[..., object]:
    return lambda out, **kw: train_student(student_config(market, teacher, genotype), out, **kw)


def _search(market: Path, teacher: Path, genotype: Path) -> Callable[..., object]:
    return lambda out, **kw: run_search(search_config(market, teacher), out, **kw)


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    """What the job finally learnt: the model file, or (search) the supernet's last weights
    and α, which hold everything the genotype is derived from."""
    if (out / WEIGHTS_FILE).is_file():
        return load_file(str(out / WEIGHTS_FILE))
    return load_checkpoint(out / LAST_CHECKPOINT)["model"]


@pytest.mark.parametrize(
    ("make_job", "log_name"),
    [(_teacher, TRAIN_LOG), (_student, TRAIN_LOG), (_search, SEARCH_LOG)],
    ids=["teacher", "student", "search"],
)
def test_resume_after_a_crash_gives_identical_results(
    make_job: Callable[..., Callable[..., object]],
    log_name: str,
    tiny_market: Path,
    tiny_teacher: Path,
    genotype_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_job(tiny_market, tiny_teacher, genotype_file)
    straight = tmp_path / "straight"
    job(straight)

    crashed = tmp_path / "crashed"
    crash_after_first_checkpoint(monkeypatch, lambda: job(crashed))
    assert load_checkpoint(crashed / LAST_CHECKPOINT)["epoch"] == 1
    with pytest.raises(KdasError, match="unfinished run"):
        job(crashed)
    job(crashed, resume=True)

    a, b = _final_state(straight), _final_state(crashed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (crashed / log_name).read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]
    straight_log = [json.loads(line) for line in (straight / log_name).read_text().splitlines()]
    for x, y in zip(log, straight_log, strict=True):
        assert x.get("losses", x.get("loss_total")) == y.get("losses", y.get("loss_total"))
    if log_name == TRAIN_LOG:
        with pytest.raises(KdasError, match="already holds a trained model"):
            job(crashed)


def test_resume_refuses_another_config(
    tiny_market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t"
    crash_after_first_checkpoint(
        monkeypatch, lambda: train_teacher(teacher_config(tiny_market), out)
    )
    other = teacher_config(tiny_market)
    other.optim.lr = 1e-3
    with pytest.raises(KdasError, match="different data/model/optimiser/loss config"):
        train_teacher(other, out, resume=True)


def test_evaluation_epochs() -> None:
    assert [e for e in range(10) if wants_eval(e, 10, 3)] == [2, 5, 8, 9]
    assert [e for e in range(4) if wants_eval(e, 4, 0)] == [3]  # 0: only the last epoch


def _hashes(folder: Path) -> dict[str, str]:
    from bad_inputs import snapshot

    return snapshot(folder)


def test_force_restores_the_earlier_run_when_the_new_one_fails_to_start(
    tiny_market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdas.engine import runner

    out = tmp_path / "t"
    train_teacher(teacher_config(tiny_market, epochs=1), out)
    before = _hashes(out)

    def no_space(path: Path, state: dict) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "save_checkpoint", no_space)
    with pytest.raises(OSError, match="No space"):
        train_teacher(teacher_config(tiny_market, epochs=1), out, force=True)
    assert _hashes(out) == before  # the old run is back, byte for byte
    assert not (out / runner.SET_ASIDE_DIR).exists()


def test_force_replaces_the_run_once_the_new_one_has_checkpointed(
    tiny_market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdas.engine import runner

    out = tmp_path / "t"
    train_teacher(teacher_config(tiny_market, epochs=1), out)
    old_weights = (out / WEIGHTS_FILE).read_bytes()
    crash_after_first_checkpoint(
        monkeypatch, lambda: train_teacher(teacher_config(tiny_market, epochs=2), out, force=True)
    )
    assert not (out / runner.SET_ASIDE_DIR).exists()  # the new run is the one to resume
    assert not (out / WEIGHTS_FILE).exists()
    train_teacher(teacher_config(tiny_market, epochs=2), out, resume=True)
    assert (out / WEIGHTS_FILE).read_bytes() != old_weights


def test_an_interrupted_force_is_undone_at_the_next_start(
    tiny_market: Path, tmp_path: Path
) -> None:
    """kill -9 between setting the old run aside and the new run's first checkpoint leaves the
    old files in OUT/.kdas-replaced; the next command puts them back before anything else."""
    from kdas.engine import runner

    out = tmp_path / "t"
    train_teacher(teacher_config(tiny_market, epochs=1), out)
    before = _hashes(out)
    runner.SetAside(out).begin()  # what the killed --force had done
    assert not (out / WEIGHTS_FILE).exists()
    with pytest.raises(KdasError, match="already holds a trained model"):
        train_teacher(teacher_config(tiny_market, epochs=1), out)
    assert _hashes(out) == before
