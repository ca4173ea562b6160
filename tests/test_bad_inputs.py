"""The bad-input catalogue of the training side (data, configs, options, artifacts, output
folders): every case exits non-zero with one `error:` line and no traceback, and leaves every
file that existed before byte-identical (`bad_inputs.expect_clean_failure`). The runtime's
cases (models, indexes, the service) are in test_bad_inputs_runtime.py.

The cases are classes of mistakes, each tried where a user makes it: a finished run is never
lost to a typo, whatever the command."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_inputs import expect_clean_failure
from tiny_configs import student_config, teacher_config

from kdas.engine.stages import train_student, train_teacher
from kdas.files import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, WEIGHTS_FILE

SMALL = ["--size", "32x16", "--p", "4", "--k", "2", "--workers", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def finished(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished teacher run folder (OUT of `kdas teacher train --out OUT`)."""
    out = tmp_path_factory.mktemp("finished")
    train_teacher(teacher_config(tiny_market, epochs=1), out / "teacher")
    return out


@pytest.fixture(scope="module")
def student_dir(
    tiny_market: Path, tiny_teacher: Path, genotype_file: Path, tmp_path_factory
) -> Path:
    out = tmp_path_factory.mktemp("student") / "student"
    train_student(student_config(tiny_market, tiny_teacher, genotype_file, epochs=1), out)
    return out


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run, for the cases that must leave it untouched."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _teacher(out: Path, data: Path | str, *extra: str) -> list[str]:
    return ["teacher", "train", "--arch", "resnet18", "--out", str(out), "--data", str(data),
            "--layout", "market1501", *SMALL, *extra]  # fmt: skip


# --- a finished run is never lost ---------------------------------------------------------


def test_force_with_a_mistyped_data_folder_keeps_the_finished_run(
    run_copy: Path, tmp_path: Path, capsys
) -> None:
    failure = expect_clean_failure(
        _teacher(run_copy, tmp_path / "typo", "--force"), guard=[run_copy], capsys=capsys
    )
    assert "typo" in failure.message


def test_resume_of_a_finished_run_without_its_checkpoint_is_refused(
    run_copy: Path, tiny_market: Path, capsys
) -> None:
    shutil.rmtree(run_copy / "teacher" / CHECKPOINT_DIR)
    failure = expect_clean_failure(
        _teacher(run_copy, tiny_market, "--resume"), guard=[run_copy], capsys=capsys
    )
    assert "nothing to resume" in failure.message and "--force" in failure.message


def test_resume_with_nothing_there_is_refused(tmp_path: Path, tiny_market: Path, capsys) -> None:
    failure = expect_clean_failure(
        _teacher(tmp_path / "new", tiny_market, "--resume"), capsys=capsys
    )
    assert "nothing to resume" in failure.message
    assert not (tmp_path / "new" / "teacher" / CONFIG_FILE).exists()


def test_train_again_without_force_is_refused(run_copy: Path, tiny_market: Path, capsys) -> None:
    failure = expect_clean_failure(_teacher(run_copy, tiny_market), guard=[run_copy], capsys=capsys)
    assert "--force" in failure.message


def test_truncated_checkpoint_on_resume(run_copy: Path, tiny_market: Path, capsys) -> None:
    checkpoint = run_copy / "teacher" / LAST_CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    failure = expect_clean_failure(
        _teacher(run_copy, tiny_market, "--resume"), guard=[run_copy], capsys=capsys
    )
    assert "truncated" in failure.message


def test_hostile_checkpoint_is_not_unpickled(run_copy: Path, tiny_market: Path, capsys) -> None:
    checkpoint = run_copy / "teacher" / LAST_CHECKPOINT
    checkpoint.write_bytes(pickle.dumps({"epoch": 1, "payload": Path("/etc/passwd")}))
    failure = expect_clean_failure(
        _teacher(run_copy, tiny_market, "--resume"), guard=[run_copy], capsys=capsys
    )
    assert "weights_only" not in failure.message


# --- output paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        lambda out, m, g, t, s: _teacher(out, m),
        lambda out, m, g, t, s: [
            "search",
            "--out",
            str(out),
            "--teacher",
            str(t),
            "--data",
            str(m),
            *SMALL,
        ],
        lambda out, m, g, t, s: [
            "train",
            "--out",
            str(out),
            "--genotype",
            str(g),
            "--kd",
            "none",
            "--data",
            str(m),
            *SMALL,
        ],
        lambda out, m, g, t, s: ["eval", str(s), "--data", str(m), "--out", str(out)],
        lambda out, m, g, t, s: ["export", str(s), "--out", str(out)],
        lambda out, m, g, t, s: [
            "ablate",
            "--out",
            str(out),
            "--data",
            str(m),
            "--teacher",
            str(t),
        ],
    ],
    ids=["teacher", "search", "train", "eval", "export", "ablate"],
)
@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_out_that_is_a_file(
    argv: Callable[..., list[str]],
    where: str,
    tmp_path: Path,
    tiny_market: Path,
    genotype_file: Path,
    tiny_teacher: Path,
    student_dir: Path,
    capsys,
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("my notes")
    out = existing if where == "file" else existing / "sub"
    failure = expect_clean_failure(
        argv(out, tiny_market, genotype_file, tiny_teacher, student_dir),
        guard=[tmp_path],
        capsys=capsys,
    )
    assert "notes.txt" in failure.message


def test_latency_table_out_that_is_a_folder(tmp_path: Path, capsys) -> None:
    failure = expect_clean_failure(
        ["latency", "profile", "--out", str(tmp_path), "--backend", "ort-fp32"], capsys=capsys
    )
    assert "folder" in failure.message


# --- options and configs out of bounds ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        (["--epochs", "0"], "epochs"),
        (["--epochs", "-3"], "epochs"),
        (["--lr", "0"], "lr"),
        (["--lr", "-0.1"], "lr"),
        (["--p", "1"], "p"),
        (["--k", "0"], "k"),
        (["--size", "256"], "size"),
        (["--size", "2x2"], "size"),
        (["--val-fraction", "1.5"], "val_fraction"),
        (["--workers", "-1"], "num_workers"),
        (["--precision", "fp16"], "fp16"),
        (["--layout", "market"], "market"),
        (["--arch", "resnet7"], "resnet7"),
    ],
)
def test_option_out_of_bounds(
    extra: list[str], word: str, tmp_path: Path, tiny_market: Path, capsys
) -> None:
    out = tmp_path / "run"
    failure = expect_clean_failure(
        _teacher(out, tiny_market, *extra), guard=[tmp_path], capsys=capsys
    )
    assert word in failure.message
    assert not (out / "teacher" / WEIGHTS_FILE).exists()


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("[run]\neval_every = -1\n", "run.eval_every"),
        ("[run]\neval_batch_size = 'six'\n", "run.eval_batch_size"),
        ("[optim]\nlr = 0.0\n", "optim.lr"),
        ("[optim]\nmomentum = 1.5\n", "optim.momentum"),
        ("[loss]\nlabel_smoothing = 1.0\n", "label_smoothing"),
        ("[loss.kd]\nt0 = -1\n", "t0"),
        ("[data]\nflip_prob = 2\n", "flip_prob"),
        ("[run]\nepcohs = 6\n", "epcohs"),
        ("[run\nepochs = 6\n", "does not parse"),
        ("[model]\nlast_stride = 3\n", "last_stride"),
    ],
)
def test_config_file_out_of_bounds(
    text: str, word: str, tmp_path: Path, tiny_market: Path, capsys
) -> None:
    config = tmp_path / "teacher.toml"
    config.write_text(text)
    failure = expect_clean_failure(
        _teacher(tmp_path / "run", tiny_market, "--config", str(config)),
        guard=[tmp_path],
        capsys=capsys,
    )
    assert word in failure.message


def test_missing_config_file(tmp_path: Path, tiny_market: Path, capsys) -> None:
    failure = expect_clean_failure(
        _teacher(tmp_path / "run", tiny_market, "--config", str(tmp_path / "nope.toml")),
        capsys=capsys,
    )
    assert "nope.toml" in failure.message


# --- data ------------------------------------------------------------------------------------


def test_data_folder_with_wrong_names(tmp_path: Path, capsys) -> None:
    root = tmp_path / "market"
    (root / "train").mkdir(parents=True)
    failure = expect_clean_failure(_teacher(tmp_path / "run", root), guard=[root], capsys=capsys)
    assert "bounding_box_train" in failure.message or "layout" in failure.message


def test_data_that_is_a_file(tmp_path: Path, capsys) -> None:
    root = tmp_path / "market.zip"
    root.write_bytes(b"PK\x03\x04")
    expect_clean_failure(_teacher(tmp_path / "run", root), guard=[root], capsys=capsys)


# --- artifacts of the wrong kind or damaged ---------------------------------------------------


def _search(out: Path, market: Path, teacher: Path | str) -> list[str]:
    return ["search", "--out", str(out), "--teacher", str(teacher), "--data", str(market), *SMALL]


def test_student_given_as_teacher(
    student_dir: Path, tmp_path: Path, tiny_market: Path, capsys
) -> None:
    failure = expect_clean_failure(
        _search(tmp_path / "s", tiny_market, student_dir), guard=[student_dir], capsys=capsys
    )
    assert "student" in failure.message and "teacher" in failure.message
    assert not (tmp_path / "s" / CONFIG_FILE).exists()


def test_student_given_as_teacher_of_a_student(
    student_dir: Path, tmp_path: Path, tiny_market: Path, genotype_file: Path, capsys
) -> None:
    failure = expect_clean_failure(
        [
            "train",
            "--out",
            str(tmp_path / "s"),
            "--genotype",
            str(genotype_file),
            "--teacher",
            str(student_dir),
            "--data",
            str(tiny_market),
            *SMALL,
        ],
        guard=[student_dir],
        capsys=capsys,
    )
    assert "--teacher" in failure.message


def test_missing_teacher_folder(tmp_path: Path, tiny_market: Path, capsys) -> None:
    failure = expect_clean_failure(
        _search(tmp_path / "s", tiny_market, tmp_path / "gone"), capsys=capsys
    )
    assert "gone" in failure.message


def test_teacher_folder_without_its_config(
    tiny_teacher: Path, tmp_path: Path, tiny_market: Path, capsys
) -> None:
    broken = Path(shutil.copytree(tiny_teacher, tmp_path / "teacher"))
    (broken / CONFIG_FILE).unlink()
    failure = expect_clean_failure(
        _search(tmp_path / "s", tiny_market, broken), guard=[broken], capsys=capsys
    )
    assert CONFIG_FILE in failure.message


def test_teacher_with_truncated_weights(
    tiny_teacher: Path, tmp_path: Path, tiny_market: Path, capsys
) -> None:
    broken = Path(shutil.copytree(tiny_teacher, tmp_path / "teacher"))
    weights = broken / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:64])
    failure = expect_clean_failure(
        _search(tmp_path / "s", tiny_market, broken), guard=[broken], capsys=capsys
    )
    assert WEIGHTS_FILE in failure.message


def test_search_folder_given_to_export(tmp_path: Path, capsys) -> None:
    search = tmp_path / "search"
    search.mkdir()
    (search / CONFIG_FILE).write_text('{"stage": "search", "config": {}}')
    failure = expect_clean_failure(["export", str(search)], guard=[search], capsys=capsys)
    assert "search" in failure.message


def _train(out: Path, market: Path, *extra: str) -> list[str]:
    return ["train", "--out", str(out), "--kd", "none", "--data", str(market), *SMALL, *extra]


@pytest.mark.parametrize(
    ("content", "word"),
    [
        (b"{not json", "genotype"),
        (b'{"format": "kdas-genotype", "version": 1, "normal": [["warp_9x9", 0]]}', "genotype"),
        (b"[]", "genotype"),
    ],
    ids=["not-json", "unknown-op", "not-an-object"],
)
def test_bad_genotype(content: bytes, word: str, tmp_path: Path, tiny_market: Path, capsys) -> None:
    genotype = tmp_path / "genotype.json"
    genotype.write_bytes(content)
    failure = expect_clean_failure(
        _train(tmp_path / "s", tiny_market, "--genotype", str(genotype)),
        guard=[genotype],
        capsys=capsys,
    )
    assert word in failure.message.lower()


def test_missing_genotype(tmp_path: Path, tiny_market: Path, capsys) -> None:
    failure = expect_clean_failure(
        _train(tmp_path / "s", tiny_market, "--genotype", str(tmp_path / "g.json")), capsys=capsys
    )
    assert "g.json" in failure.message


@pytest.mark.parametrize("kind", ["truncated", "pickled-object"])
def test_bad_init_weights(
    kind: str, tmp_path: Path, tiny_market: Path, genotype_file: Path, capsys
) -> None:
    weights = tmp_path / "init.pt"
    if kind == "truncated":
        weights.write_bytes(b"PK\x03\x04garbage")
    else:
        weights.write_bytes(pickle.dumps({"model": Path("/etc/passwd")}))
    failure = expect_clean_failure(
        _train(
            tmp_path / "s", tiny_market, "--genotype", str(genotype_file), "--init", str(weights)
        ),
        guard=[weights],
        capsys=capsys,
    )
    assert "init.pt" in failure.message and "weights_only" not in failure.message


def test_eval_of_a_missing_model(tmp_path: Path, tiny_market: Path, capsys) -> None:
    failure = expect_clean_failure(
        ["eval", str(tmp_path / "nope"), "--data", str(tiny_market)], capsys=capsys
    )
    assert "nope" in failure.message


# --- the writers themselves -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_synthesise_into_a_file(where: str, tmp_path: Path, capsys) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("my notes")
    out = existing if where == "file" else existing / "market"
    failure = expect_clean_failure(
        ["data", "synth", str(out), "--ids", "4"], guard=[tmp_path], capsys=capsys
    )
    assert "notes.txt" in failure.message


def test_pipeline_run_folder_under_a_file(tmp_path: Path, capsys) -> None:
    existing = tmp_path / "runs"
    existing.write_text("not a folder")
    config = tmp_path / "p.toml"
    config.write_text("name = 'x'\n[data]\nroot = 'nowhere'\n")
    failure = expect_clean_failure(
        ["pipeline", str(config), "--runs-dir", str(existing)], guard=[tmp_path], capsys=capsys
    )
    assert "runs" in failure.message


def test_export_into_a_file_of_another_kind(student_dir: Path, tmp_path: Path, capsys) -> None:
    notes = tmp_path / "model.txt"
    notes.write_text("keep me")
    failure = expect_clean_failure(
        ["export", str(student_dir), "--out", str(notes)], guard=[tmp_path], capsys=capsys
    )
    assert ".onnx" in failure.message
