"""kill -9 at random points of a real `kdas teacher train` and `kdas search` process, then what a
user does next (`--resume` when there is a checkpoint, the same command when there is none),
gives bit-identical final weights to an uninterrupted run on CPU.

The points are drawn from a fixed seed over the uninterrupted run's wall time, so some land in
the start-up, most in the epochs, some in the final writes; every one must end the same."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdas.engine.checkpoint import load_checkpoint
from kdas.engine.runner import SET_ASIDE_DIR, has_checkpoint
from kdas.files import CONFIG_FILE, GENOTYPE_FILE, LAST_CHECKPOINT, WEIGHTS_FILE

pytestmark = pytest.mark.slow

POINTS = 5
DATA = "[data]\nsize = [32, 16]\np = 4\nk = 2\nbatches_per_epoch = 2\nnum_workers = 0\n"
RUN = "[run]\nepochs = 3\neval_every = 0\nprogress = false\ndevice = 'cpu'\nthreads = 1\n"
TEACHER = DATA + "[model]\nname = 'resnet18'\n" + RUN
SEARCH = (
    DATA
    + "[model]\nC = 4\nlayers = 2\nreduction_positions = [1]\nsteps = 2\nmultiplier = 2\n"
    + "[loss.kd]\nmode = 'dynamic'\n"
    + RUN
)


def _command(kind: str, out: Path, config: Path, market: Path, teacher: Path) -> list[str]:
    common = ["--out", str(out), "--config", str(config), "--data", str(market)]
    if kind == "teacher":
        return [sys.executable, "-m", "kdas", "teacher", "train", *common]
    return [sys.executable, "-m", "kdas", "search", *common, "--teacher", str(teacher)]


def _stage_dir(kind: str, out: Path) -> Path:
    return out / "teacher" if kind == "teacher" else out


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def _final(kind: str, stage: Path) -> dict[str, torch.Tensor]:
    if kind == "teacher":
        return load_file(str(stage / WEIGHTS_FILE))
    return load_checkpoint(stage / LAST_CHECKPOINT)["model"]  # weights and α


@pytest.mark.parametrize("kind", ["teacher", "search"])
def test_kill_9_then_resume_is_bit_identical(
    kind: str, tiny_market: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    config = tmp_path / f"{kind}.toml"
    config.write_text(TEACHER if kind == "teacher" else SEARCH)

    straight = tmp_path / "straight"
    started = time.perf_counter()
    _run(_command(kind, straight, config, tiny_market, tiny_teacher))
    wall = time.perf_counter() - started
    reference = _final(kind, _stage_dir(kind, straight))

    rng = random.Random(17)
    resumed = 0
    for point in range(POINTS):
        out = tmp_path / f"killed{point}"
        argv = _command(kind, out, config, tiny_market, tiny_teacher)
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * wall)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()

        stage = _stage_dir(kind, out)
        if has_checkpoint(stage):
            resumed += 1
            _run([*argv, "--resume"])
        elif not (stage / (CONFIG_FILE if kind == "teacher" else GENOTYPE_FILE)).is_file():
            _run(argv)  # killed before its first checkpoint: start it again
        final = _final(kind, stage)
        assert final.keys() == reference.keys()
        for key in reference:
            assert torch.equal(final[key], reference[key]), (point, key)
        assert not (stage / SET_ASIDE_DIR).exists()
        if kind == "search":
            assert (stage / GENOTYPE_FILE).read_text() == (straight / GENOTYPE_FILE).read_text()
    assert resumed >= 2, f"only {resumed} of {POINTS} kills landed after a checkpoint"
