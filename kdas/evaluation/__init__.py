"""Retrieval evaluation: metrics, distances and re-ranking are numpy-only (the runtime uses them);
feature extraction (torch) and plots (matplotlib) load on first use."""

from __future__ import annotations

import importlib
from typing import Any

from kdas.evaluation.distances import compute_distance_matrix
from kdas.evaluation.metrics import RankResult, evaluate_rank
from kdas.evaluation.rerank import rerank

_LAZY = {
    "extract_features": "kdas.evaluation.extract",
    "Features": "kdas.evaluation.extract",
    "evaluate_features": "kdas.evaluation.extract",
    "plot_rank_list": "kdas.evaluation.plots",
    "plot_cmc": "kdas.evaluation.plots",
}

__all__ = [
    "Features",
    "RankResult",
    "compute_distance_matrix",
    "evaluate_features",
    "evaluate_rank",
    "extract_features",
    "plot_cmc",
    "plot_rank_list",
    "rerank",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
