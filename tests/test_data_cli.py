"""`kdas data synth` and `kdas data inspect` through the real entry point."""

from __future__ import annotations

import pytest

from kdas.cli.app import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_synth_then_inspect(tmp_path, capsys):
    out = tmp_path / "syn"
    code, stdout, _ = _run(
        capsys,
        "data",
        "synth",
        str(out),
        "--ids",
        "6",
        "--cameras",
        "2",
        "--images-per-camera",
        "2",
        "--size",
        "32x16",
        "--seed",
        "3",
    )
    assert code == 0
    assert f"wrote a synthetic market1501 data set to {out}" in stdout
    assert "12 train" in stdout and "3 query" in stdout  # one query camera of two
    assert f"inspect it with: kdas data inspect {out} --layout market1501" in stdout

    code, stdout, _ = _run(capsys, "data", "inspect", str(out), "--layout", "market1501")
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in stdout.splitlines() if "│" in line}
    assert [c.strip() for c in rows["train"].split("│")[2:6]] == ["3", "12", "2", "0"]
    assert [c.strip() for c in rows["gallery"].split("│")[2:6]] == ["3", "29", "2", "20"]
    assert "left out: gallery_junk 20" in stdout


def test_synth_cuhk03_prints_the_variant(tmp_path, capsys):
    code, stdout, _ = _run(
        capsys,
        "data",
        "synth",
        str(tmp_path / "c"),
        "--ids",
        "4",
        "--layout",
        "cuhk03",
        "--images-per-camera",
        "1",
        "--size",
        "32x16",
    )
    assert code == 0 and "--layout cuhk03 --variant labeled" in stdout
    code, stdout, _ = _run(
        capsys,
        "data",
        "inspect",
        str(tmp_path / "c"),
        "--layout",
        "cuhk03",
        "--variant",
        "detected",
    )
    assert code == 0 and "cuhk03-detected" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "inspect", "{tmp}/nothing"], "error: market1501: data set root"),
        (["data", "inspect", "{tmp}", "--layout", "viper"], "error: unknown data set layout"),
        (["data", "inspect", "{tmp}", "--merge-val"], "error: layout market1501 has no option"),
        (["data", "synth", "{tmp}/s", "--size", "big"], "error: size 'big' is not HEIGHTxWIDTH"),
        (["data", "synth", "{tmp}/s", "--layout", "folder"], "error: --layout must be one of"),
        (["data", "synth", "{tmp}/s", "--cameras", "9"], "error: synth: market1501 has 2..6"),
    ],
)
def test_errors_exit_non_zero_with_one_line(tmp_path, capsys, argv, message):
    code, _, stderr = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 1
    assert stderr.startswith(message) and stderr.count("\n") == 1
