"""The bootstrap interval for medians of censored steps-to-threshold (analysis/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from probes.analysis.stats import MedianCI, bootstrap_median_ci


def test_point_estimate_is_the_sample_median_with_censored_as_inf() -> None:
    assert bootstrap_median_ci([300, 100, 200]).median == 200
    assert bootstrap_median_ci([100, 200, 300, 400]).median == 250
    assert bootstrap_median_ci([100, 200, math.inf]).median == 200
    assert bootstrap_median_ci([100, math.inf]).median == math.inf  # half not reached: not reached
    assert bootstrap_median_ci([math.inf, math.inf, 5]).median == math.inf


def test_interval_brackets_the_median_and_is_made_of_observed_medians() -> None:
    values = [100, 200, 300, 400, 500, 600, 700, 800, 900]
    med, lo, hi = bootstrap_median_ci(values)
    assert lo <= med <= hi and (lo, hi) != (med, med)
    assert lo in values and hi in values  # odd n: every resample median is an observed value
    assert lo >= 100 and hi <= 900


def test_deterministic_for_a_seed_and_seed_matters() -> None:
    rng = np.random.default_rng(1)
    values = list(rng.integers(100, 5000, size=12).astype(float))
    a = bootstrap_median_ci(values, n_boot=3000, seed=7)
    assert a == bootstrap_median_ci(values, n_boot=3000, seed=7)
    others = {bootstrap_median_ci(values, n_boot=50, seed=s)[1:] for s in range(20)}
    assert len(others) > 1


def test_censored_upper_bound_is_inf_and_all_censored_is_all_inf() -> None:
    med, lo, hi = bootstrap_median_ci([100, 200, 300, math.inf, math.inf], n_boot=4000)
    assert med == 300 and math.isfinite(lo) and hi == math.inf
    assert bootstrap_median_ci([math.inf] * 3) == MedianCI(math.inf, math.inf, math.inf)


def test_single_value_and_constant_values_give_a_degenerate_interval() -> None:
    assert bootstrap_median_ci([42]) == (42, 42, 42)
    assert bootstrap_median_ci([7, 7, 7, 7], n_boot=100) == (7, 7, 7)


def test_coverage_on_a_known_distribution_is_near_the_level() -> None:
    """Percentile-bootstrap intervals for the median of 41 exponential draws cover the true median
    (ln 2) in roughly 95% of 200 repetitions; a broken quantile would land far from it."""
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        sample = rng.exponential(1.0, size=41)
        _, lo, hi = bootstrap_median_ci(sample, n_boot=1000, seed=rep)
        hits += lo <= math.log(2) <= hi
    assert 0.88 <= hits / 200 <= 0.995


def test_wider_level_gives_a_wider_interval() -> None:
    values = list(range(1, 60))
    _, lo90, hi90 = bootstrap_median_ci(values, level=0.90)
    _, lo99, hi99 = bootstrap_median_ci(values, level=0.99)
    assert lo99 <= lo90 and hi99 >= hi90 and (lo99, hi99) != (lo90, hi90)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"values": []},
        {"values": [1.0, math.nan]},
        {"values": [-math.inf, 1.0]},
        {"values": [1.0], "n_boot": 0},
        {"values": [1.0], "level": 1.0},
        {"values": [1.0], "level": 0.0},
    ],
)
def test_bad_input_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bootstrap_median_ci(**kwargs)
