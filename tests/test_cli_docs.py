"""The CLI stays documented, light to start, and importable as `python -m kdas`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from kdas.cli.app import app

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _leaf_commands() -> list[str]:
    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    names = []

    def walk(command: typer.core.TyperCommand, prefix: str) -> None:
        if hasattr(command, "list_commands"):  # typer vendors its own click classes
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), f"{prefix} {name}")
        else:
            names.append(prefix)

    walk(root, "kdas")
    return names


def test_every_command_is_in_docs_cli_md() -> None:
    text = DOCS.read_text()
    commands = _leaf_commands()
    assert len(commands) >= 18
    missing = [c for c in commands if f"`{c}" not in text]
    assert not missing, f"docs/cli.md does not document {missing}"


def test_python_dash_m_kdas_and_no_torch_for_help() -> None:
    code = (
        "import sys, runpy; sys.argv = ['kdas', '--help']\n"
        "try:\n    runpy.run_module('kdas', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code in (0, None)\n"
        "assert 'torch' not in sys.modules, 'kdas --help imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "pipeline" in result.stdout
    version = subprocess.run(
        [sys.executable, "-m", "kdas", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("kdas ")
