"""The deployable retrieval runtime. Never imports torch: it ships to edge boxes alone.

Names are resolved lazily, so `import kdas.runtime` costs nothing until one is used (and an
edge box without faiss can still embed, one without onnxruntime can still search).
"""

from __future__ import annotations

from kdas.utils.lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _EXPORTS)
