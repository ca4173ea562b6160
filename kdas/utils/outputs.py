"""Output paths checked before any work starts, so a typo in `--out` costs a second, not the
epoch (or the index build) that would have ended in a traceback when the first write failed.

Standard library only: the runtime checks its index folders with it too.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdas.errors import KdasError


def writable_ancestor(path: Path) -> Path:
    """The nearest existing ancestor of `path`, which must be a folder kdas can write into."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise KdasError(f"cannot make {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise KdasError(f"cannot write {path}: {ancestor} is not a writable folder")
    return ancestor


def check_out_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """A folder kdas may write into: an existing folder, or a path that can be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise KdasError(
            f"{option} {path} is a file, not a folder: give a folder (it is made when missing)"
        )
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise KdasError(f"cannot write into {path}: the folder is not writable")
        return path
    writable_ancestor(path)
    return path


def check_out_file(
    path: str | os.PathLike[str],
    force: bool = True,
    option: str = "--out",
    example: str = "out.json",
) -> Path:
    """A file kdas may write: not a folder, not an existing file unless `force`, in a folder
    that exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise KdasError(f"{option} {path} is a folder: give a file name, e.g. {path / example}")
    if path.exists() and not force:
        raise KdasError(f"{path} exists: pass --force to overwrite it")
    writable_ancestor(path)
    return path
