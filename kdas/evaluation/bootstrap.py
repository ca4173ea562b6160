"""Evaluation noise: the bootstrap over queries of a per-query metric's mean (numpy only).

mAP is the mean of per-query AP, rank-1 the mean of per-query "first true match at rank 1";
both are estimates from a finite query set. Resampling the queries with replacement B times and
taking the mean of each resample gives the spread those numbers would have on another query set
drawn the same way: the standard error is the std of the B means, the 95 % interval their 2.5 and
97.5 % percentiles. All metrics are resampled with the same indices, so they stay paired.

What it does not see: the gallery is held fixed, and queries are treated as independent, so
several queries of one identity (correlated) make it somewhat optimistic; it measures evaluation
noise only, never the spread between training runs (that is what several seeds are for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdas.errors import KdasError

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95
_INDEX_BUDGET = 1 << 21  # resample indices drawn at once (16 MB of int64)


@dataclass(frozen=True)
class BootstrapEstimate:
    """A mean, its bootstrap standard error and a percentile interval."""

    mean: float  # on the original sample
    se: float  # std (ddof 1) of the resample means
    low: float  # lower percentile, (1 - level) / 2
    high: float  # upper percentile, (1 + level) / 2
    level: float
    resamples: int
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "se": self.se,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "resamples": self.resamples,
            "n": self.n,
        }


def _check(samples: Mapping[str, Any], resamples: int, level: float) -> dict[str, np.ndarray]:
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer):
        raise KdasError(f"bootstrap resamples must be an integer, got {resamples!r}")
    if resamples < 2:
        raise KdasError(f"bootstrap needs at least 2 resamples, got {resamples}")
    if not 0 < level < 1:
        raise KdasError(f"bootstrap level must be in (0, 1), got {level!r}")
    if not samples:
        raise KdasError("bootstrap needs at least one metric")
    arrays = {}
    for name, value in samples.items():
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 1 or len(array) == 0:
            raise KdasError(f"bootstrap: {name} must be a non-empty 1-D array, got {array.shape}")
        if not np.isfinite(array).all():
            raise KdasError(f"bootstrap: {name} holds NaN or Inf")
        arrays[name] = array
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        raise KdasError(f"bootstrap: the metrics have different lengths {sorted(lengths)}")
    return arrays


def bootstrap_means(
    samples: Mapping[str, Any],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> dict[str, BootstrapEstimate]:
    """Bootstrap each named per-query array's mean, every metric on the same resampled queries.

    Deterministic: the same seed and query count draw the same resamples. Memory stays bounded
    (the resamples are drawn in chunks), whatever the number of queries.
    """
    arrays = _check(samples, resamples, level)
    n = len(next(iter(arrays.values())))
    stacked = np.stack(list(arrays.values()))  # (metrics, n), each row contiguous for take
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, len(stacked)))
    step = max(1, _INDEX_BUDGET // n)
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        idx = rng.integers(0, n, size=(count, n))
        for j, row in enumerate(stacked):
            means[start : start + count, j] = np.take(row, idx).mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail], axis=0)
    se = means.std(axis=0, ddof=1)
    return {
        name: BootstrapEstimate(
            mean=float(stacked[j].mean()),
            se=float(se[j]),
            low=float(low[j]),
            high=float(high[j]),
            level=float(level),
            resamples=int(resamples),
            n=n,
        )
        for j, name in enumerate(arrays)
    }
