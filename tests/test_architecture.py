"""The import directions of docs/architecture.md hold for every module of kdas."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdas"
# the shared top-level modules, and utils (standard library only), which every folder may use
LEAVES = {"kdas", "errors", "constants", "files", "images", "progress", "utils"}


def _allowed_imports() -> dict[str, set[str]]:
    """The table's "may import" column, folder by folder."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    allowed: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`\w+`", cells[0]):
            continue
        folder = cells[0].strip("`")
        if (PACKAGE / folder).is_dir():
            allowed[folder] = set(re.findall(r"`(\w+)`", cells[2]))
    return allowed


def _kdas_imports(path: Path) -> set[str]:
    """Every `kdas.X...` module a file imports (at the top or inside a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "kdas")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update([node.module] if node.module.split(".")[0] == "kdas" else [])
    return found


def _folder_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kdas"


def test_the_table_names_every_folder() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert set(_allowed_imports()) == folders


@pytest.mark.parametrize("folder", sorted(_allowed_imports()))
def test_imports_follow_the_table(folder: str) -> None:
    allowed = _allowed_imports()[folder] | LEAVES | {folder}
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        for module in sorted(_kdas_imports(path))
        if _folder_of(module) not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def test_shared_leaves_import_only_errors() -> None:
    for name in ("errors", "constants", "files", "images", "progress"):
        imports = _kdas_imports(PACKAGE / f"{name}.py")
        assert imports <= {"kdas.errors"}, (name, imports)


def test_runtime_uses_only_torch_free_parts() -> None:
    torch_free = {
        "kdas.evaluation.distances",
        "kdas.evaluation.metrics",
        "kdas.evaluation.rerank",
        "kdas.evaluation.rank_picture",
        "kdas.data.layouts",
        "kdas.data.records",
    }
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for module in _kdas_imports(path):
            if _folder_of(module) in ("evaluation", "data"):
                assert module in torch_free, f"{path.name} imports {module}"
