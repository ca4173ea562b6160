"""The deployable retrieval runtime. Never imports torch: it ships to edge boxes alone.

Names are resolved lazily, so `import kdas.runtime` costs nothing until one is used (and an
edge box without faiss can still embed, one without onnxruntime can still search).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbeddingModelInfo": "kdas.runtime.model_meta",
    "create_session": "kdas.runtime.session",
    "read_model_info": "kdas.runtime.session",
    "Embedder": "kdas.runtime.embedder",
    "GalleryIndex": "kdas.runtime.index",
    "SearchHit": "kdas.runtime.index",
    "IndexParams": "kdas.runtime.faiss_backend",
    "GalleryRecord": "kdas.runtime.metadata",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdas.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
