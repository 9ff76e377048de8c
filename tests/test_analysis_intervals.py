"""The small-sample intervals (analysis/intervals.py): exact values, edge cases and coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from probes.analysis.intervals import (
    Interval,
    mean_interval,
    median_interval,
    order_statistic_coverage,
    paired_difference,
)


def test_order_statistic_coverage_matches_the_binomial_by_hand() -> None:
    assert order_statistic_coverage(3, 1) == pytest.approx(0.75)  # 1 - 2 / 8
    assert order_statistic_coverage(5, 1) == pytest.approx(1 - 2 / 32)
    assert order_statistic_coverage(9, 2) == pytest.approx(1 - 2 * (1 + 9) / 512)
    with pytest.raises(ValueError):
        order_statistic_coverage(4, 3)


def test_median_interval_is_min_max_at_small_n_with_its_real_coverage() -> None:
    out = median_interval([300, 100, 200])
    assert (out.estimate, out.low, out.high) == (200, 100, 300)
    assert out.coverage == pytest.approx(0.75)
    assert out.format("{:.0f}") == "200 [100, 300] (75 %, n=3)"


def test_median_interval_moves_inwards_once_the_level_allows() -> None:
    values = list(range(1, 10))  # n = 9: j = 2 keeps 96.1 % >= 95 %, j = 3 would give 82 %
    out = median_interval(values)
    assert (out.low, out.high) == (2, 8)
    assert out.coverage == pytest.approx(order_statistic_coverage(9, 2))
    assert out.coverage >= 0.95


def test_censored_runs_bound_nothing_and_n1_says_na() -> None:
    out = median_interval([100, 200, math.inf, math.inf, math.inf])
    assert out.estimate == math.inf and out.high == math.inf and out.low == 100
    assert "not reached" in out.format("{:.0f}")
    assert Interval(-0.0, -math.inf, -0.0, 0.9375, 5, "order statistics").format("{:.0f}") == "0 [-inf, 0] (93.8 %, n=5)"
    single = median_interval([2490])
    assert not single.available
    assert single.format("{:.0f}") == "2490 (n=1: interval n/a)"


def test_bad_values_are_rejected() -> None:
    for bad in ([], [float("nan")], [-math.inf]):
        with pytest.raises(ValueError):
            median_interval(bad)
    with pytest.raises(ValueError):
        mean_interval([1.0, math.inf])
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        median_interval([1, 2, 3], level=1.0)


def test_mean_and_paired_intervals_by_hand() -> None:
    out = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2.0  # t_{0.975, 3}
    assert out.low == pytest.approx(2.5 - half) and out.high == pytest.approx(2.5 + half)
    assert out.coverage == 0.95 and out.n == 4
    paired = paired_difference([2.0, 3.0, 5.0], [1.0, 1.0, 2.0])
    assert paired.estimate == pytest.approx(2.0) and paired.method == "paired Student t"
    assert not mean_interval([0.4]).available


def _simulated_coverage(make: object, draw: object, truth: float, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        iv: Interval = make(draw(rng))  # type: ignore[operator]
        assert iv.low is not None and iv.high is not None
        hits += iv.low <= truth <= iv.high
    return hits / reps


@pytest.mark.parametrize("n", [3, 5, 9])
def test_median_interval_coverage_is_what_it_prints(n: int) -> None:
    """Skewed, step-like data (an exponential on an evaluation grid of 50): the printed coverage holds."""
    truth = 50 * math.ceil(math.log(2) * 1000 / 50)  # the grid median of 1000 * Exp(1) rounded up to 50
    coverage = median_interval(list(range(n))).coverage
    assert coverage is not None
    draw = lambda rng: (50 * np.ceil(rng.exponential(1000, n) / 50)).tolist()  # noqa: E731
    got = _simulated_coverage(median_interval, draw, truth, reps=4000, seed=n)
    # at least the stated coverage (ties on the grid only add coverage), minus Monte-Carlo noise (~3 s.e.)
    assert got >= coverage - 3 * math.sqrt(coverage * (1 - coverage) / 4000)


@pytest.mark.parametrize("n", [3, 4, 8])
def test_t_intervals_cover_at_their_level(n: int) -> None:
    draw = lambda rng: rng.normal(0.4, 0.05, n).tolist()  # noqa: E731
    got = _simulated_coverage(mean_interval, draw, 0.4, reps=4000, seed=10 + n)
    assert abs(got - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 4000)
    shared = lambda rng: rng.normal(0, 0.1, n)  # noqa: E731  the seed effect both arms share

    def pair(rng: np.random.Generator) -> tuple[list[float], list[float]]:
        s = shared(rng)
        return (s + 0.03 + rng.normal(0, 0.01, n)).tolist(), (s + rng.normal(0, 0.01, n)).tolist()

    got = _simulated_coverage(lambda ab: paired_difference(*ab), pair, 0.03, reps=4000, seed=20 + n)
    assert abs(got - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 4000)
