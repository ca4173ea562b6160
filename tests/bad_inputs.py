"""The bad-input catalogue's one check: a command given a bad input exits non-zero with one
`error:` line and no traceback, and leaves every file that existed before it byte-identical.

    failure = expect_clean_failure(["teacher", "train", ...], guard=[run_dir, data_dir])
    assert "--data" in failure.message
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdas.cli.app import main


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (a file root counts as itself), by path."""
    hashes: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@dataclass
class Failure:
    code: int
    message: str  # the one line the user sees, without its "error: " prefix


def expect_clean_failure(
    argv: list[str],
    guard: list[Path] | tuple[Path, ...] = (),
    capsys: pytest.CaptureFixture | None = None,
) -> Failure:
    """Run `kdas argv` and check the failure is clean; returns the code and the message.

    Files under `guard` must be unchanged and still there afterwards (new files may appear only
    where the test itself allows it, by not guarding that folder)."""
    before = snapshot(*guard)
    if capsys is not None:
        capsys.readouterr()
    with pytest.raises(SystemExit) as raised:
        main(argv)
    code = raised.value.code
    assert isinstance(code, int) and code != 0, f"kdas {' '.join(argv)} exited {code!r}"
    if capsys is not None:
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err, err
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1, f"expected one error line, got: {err!r}"
        message = errors[0][len("error: ") :]
    else:
        message = ""
    after = snapshot(*guard)
    assert after == before, _changes(before, after)
    return Failure(code, message)


def _changes(before: dict[str, str], after: dict[str, str]) -> str:
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    return f"files lost: {gone}, files changed: {changed}"
