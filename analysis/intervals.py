"""Confidence intervals whose coverage is true at the sample size the reports have (3 to 10 runs a group).

Why not the bootstrap: a percentile bootstrap of a median over ``n = 3`` runs always returns ``[min, max]``,
whose real coverage is 75 %, not the 95 % it was labelled with; at ``n = 1`` it prints a zero-width
"interval". The intervals here are the textbook small-sample ones, each carrying the coverage it really has:

- :func:`median_interval`: the distribution-free order-statistic interval for a median (Hollander, Wolfe &
  Chicken, *Nonparametric Statistical Methods*, 3rd ed., §3.6). For ``n`` independent runs the interval
  ``[x_(j), x_(n+1-j)]`` covers the population median with probability ``1 - 2 P(Bin(n, 1/2) <= j - 1)``,
  exactly, for any continuous distribution (at least that for discrete ones, such as step counts on an
  evaluation grid). The narrowest such pair reaching ``level`` is returned; when none does (``n <= 5`` for
  95 %) the widest, ``[min, max]``, with its real coverage (75 % at ``n = 3``). Censored values (a run that
  never reached the threshold) enter as ``math.inf``: order statistics need only the ranks, so a bound of
  ``inf`` reads "not reached, the data cannot bound the median there".
- :func:`mean_interval` and :func:`paired_difference`: Student's t interval for a mean over seeds, and for
  the mean of per-seed differences in a paired design (two arms sharing a seed, a data stream or a stage 1).
  Exact under normal noise; a nominal coverage otherwise, which is what is printed.

Every interval prints with its coverage and ``n`` (:meth:`Interval.format`), or "n/a" when ``n`` is too small
to say anything (``n = 1``). ``tests/test_analysis_intervals.py`` checks the stated coverage by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A point estimate and an interval with the coverage it really has (``None`` bounds: n/a)."""

    estimate: float
    low: float | None
    high: float | None
    coverage: float | None
    n: int
    method: str

    @property
    def available(self) -> bool:
        return self.low is not None and self.high is not None

    def format(self, fmt: str = "{:.3g}") -> str:
        """``1200 [900, 1500] (93.8 %, n=5)``; ``1200 (n=1: interval n/a)``; ``inf`` prints "not reached"."""
        est = _fmt(self.estimate, fmt)
        if not self.available:
            return f"{est} (n={self.n}: interval n/a)"
        assert self.low is not None and self.high is not None and self.coverage is not None
        return f"{est} [{_fmt(self.low, fmt)}, {_fmt(self.high, fmt)}] ({_pct(self.coverage)}, n={self.n})"


def _fmt(value: float, fmt: str) -> str:
    if math.isinf(value):
        return "not reached" if value > 0 else "-inf"
    return fmt.format(value + 0.0)  # + 0.0: a difference of -0.0 prints as 0


def _pct(coverage: float) -> str:
    """Coverage in percent with the digits it needs: 75 %, 93.8 %, 95 %, 98.4 %."""
    pct = 100.0 * coverage
    return f"{pct:.0f} %" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f} %"


def _check(values: Sequence[float], allow_inf: bool) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.size == 0:
        raise ValueError("an interval needs at least one value")
    if np.isnan(arr).any() or (arr == -math.inf).any() or (not allow_inf and np.isinf(arr).any()):
        kinds = "numbers or +inf (censored)" if allow_inf else "finite numbers"
        raise ValueError(f"values must be {kinds}")
    return arr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (got {level})")


def order_statistic_coverage(n: int, j: int) -> float:
    """Exact coverage of ``[x_(j), x_(n+1-j)]`` (1-based ranks) for the median of ``n`` independent draws."""
    if not 1 <= j <= (n + 1) // 2:
        raise ValueError(f"rank j must be in 1..{(n + 1) // 2} for n={n} (got {j})")
    return float(1.0 - 2.0 * stats.binom.cdf(j - 1, n, 0.5))


def sample_median(arr: np.ndarray) -> float:
    """The sample median where a middle pair (x, inf) gives inf: half the runs "not reached" is not reached."""
    srt = np.sort(arr)
    lo, hi = srt[(srt.size - 1) // 2], srt[srt.size // 2]
    return math.inf if math.isinf(hi) else float((lo + hi) / 2.0)


def median_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """The sample median and its exact order-statistic interval (module docstring); ``+inf`` is censored."""
    _check_level(level)
    arr = _check(values, allow_inf=True)
    n = int(arr.size)
    est = sample_median(arr)
    if n < 2:
        return Interval(est, None, None, None, n, "order statistics")
    srt = np.sort(arr)
    j = 1  # widest pair; move inwards while the coverage stays at or above the level
    while j + 1 <= (n + 1) // 2 and order_statistic_coverage(n, j + 1) >= level:
        j += 1
    return Interval(est, float(srt[j - 1]), float(srt[n - j]), order_statistic_coverage(n, j), n, "order statistics")


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean and its Student-t interval at ``level`` (n/a for n = 1)."""
    _check_level(level)
    arr = _check(values, allow_inf=False)
    n = int(arr.size)
    est = float(arr.mean())
    if n < 2:
        return Interval(est, None, None, None, n, "Student t")
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return Interval(est, est - half, est + half, level, n, "Student t")


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of the per-pair differences ``a_i - b_i`` with its Student-t interval (pairs share a seed)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths (got {len(a)} and {len(b)})")
    diff = _check(a, allow_inf=False) - _check(b, allow_inf=False)
    out = mean_interval(diff.tolist(), level)
    return Interval(out.estimate, out.low, out.high, out.coverage, out.n, "paired Student t")
