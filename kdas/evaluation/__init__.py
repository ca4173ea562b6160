"""Retrieval evaluation: metrics, distances and re-ranking are numpy-only (the runtime uses them;
scipy loads only when re-ranking runs); feature extraction (torch) and plots (matplotlib) load on
first use."""

from __future__ import annotations

from kdas.evaluation.distances import compute_distance_matrix
from kdas.evaluation.metrics import RankResult, evaluate_rank
from kdas.evaluation.rerank import rerank
from kdas.utils.lazy import lazy_getattr

_LAZY = {
    "extract_features": "kdas.evaluation.extract",
    "Features": "kdas.evaluation.extract",
    "evaluate_features": "kdas.evaluation.extract",
    "plot_rank_list": "kdas.evaluation.plots",
    "plot_cmc": "kdas.evaluation.plots",
}

__all__ = [
    "RankResult",
    "compute_distance_matrix",
    "evaluate_rank",
    "rerank",
    *_LAZY,
]

__getattr__ = lazy_getattr(__name__, _LAZY)
