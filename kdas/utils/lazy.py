"""Package attributes that import their module on first use, so importing a package is free.

`kdas.runtime` and `kdas.export` name what they offer without importing onnxruntime, faiss or
torch until a name is used (an edge box without faiss can still embed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that resolves `name` from the module `exports[name]` names."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
