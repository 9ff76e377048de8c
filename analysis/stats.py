"""Bootstrap confidence intervals for a median of possibly censored values (steps to threshold).

Method: the percentile bootstrap over runs (Efron & Tibshirani 1993, ch. 13). The ``n`` values are
resampled with replacement ``n_boot`` times, the median of each resample is taken, and the interval is the
``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those medians, read as order statistics of the
bootstrap distribution (``numpy.quantile(..., method="inverted_cdf")``: always one of the medians, never an
interpolation between a number and infinity).

Censoring: a run that did not reach the threshold has a step count larger than anything observed, so it
enters as ``math.inf``. Medians are order statistics, so that is exact for them: a resample whose median
lands on a censored run has median ``inf``, i.e. "not reached"; an interval bound equal to ``inf`` means the
bound is "not reached" (the data cannot put an upper limit on the median). The point estimate is the plain
sample median under the same convention. The report prints its own censored median (a lower bound such as
``>3000``, :func:`probes.analysis.metrics.censored_median`) beside this interval. For runs censored at the
end of their budget (every finished run that did not reach) both agree on whether the median is exact; a
run censored early (still running, interrupted) is ``inf`` here but a lower bound at its last evaluation
there, so while a grid is still training the two can differ.

With the paper's grid (9 runs per model, length and order) the bootstrap distribution of a median takes only
a few distinct values, so the interval is coarse and its coverage only approximately ``level``: read it as
"how much the median moves if the seeds and learning rates had come out differently", not as an exact test.

Deterministic: the resampling uses ``numpy.random.default_rng(seed)``, so the same values and seed give the
same interval on every machine and call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

_CHUNK = 2048  # bootstrap rows per block: bounds memory at _CHUNK * n floats for large groups


class MedianCI(NamedTuple):
    """``(median, lo, hi)``; any of them may be ``math.inf`` ("not reached")."""

    median: float
    lo: float
    hi: float


def bootstrap_median_ci(
    values: Sequence[float], n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> MedianCI:
    """The sample median and a ``level`` percentile-bootstrap interval for it; censored values are ``inf``.

    Raises ``ValueError`` for no values, NaN or ``-inf`` values, ``n_boot < 1`` or ``level`` outside (0, 1).
    """
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.size == 0:
        raise ValueError("bootstrap_median_ci needs at least one value")
    if np.isnan(arr).any() or (arr == -math.inf).any():
        raise ValueError("values must be numbers or +inf (censored); NaN and -inf are not allowed")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1 (got {n_boot})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    median = _median(arr)
    rng = np.random.default_rng(seed)
    meds = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _CHUNK):
        rows = min(_CHUNK, n_boot - start)
        idx = rng.integers(0, arr.size, size=(rows, arr.size))
        meds[start : start + rows] = _median(arr[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(meds, [alpha, 1.0 - alpha], method="inverted_cdf")
    return MedianCI(float(median), float(lo), float(hi))


def _median(arr: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """``numpy.median`` where a middle pair (x, inf) gives inf: the mean of a number and "not reached"
    is "not reached". Sorting keeps inf last, so the usual definition applies unchanged."""
    srt = np.sort(arr, axis=-1 if axis is not None else None)
    n = srt.shape[-1]
    lo, hi = srt[..., (n - 1) // 2], srt[..., n // 2]
    with np.errstate(invalid="ignore"):
        out = np.where(np.isinf(hi), math.inf, (lo + hi) / 2.0)
    return out if axis is not None else float(out)
