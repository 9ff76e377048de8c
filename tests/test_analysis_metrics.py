"""Metrics against hand-made trajectories with known answers (censoring included)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import ramp, write_run  # noqa: E402
from probes.analysis.metrics import (  # noqa: E402
    Value,
    band_accuracy,
    band_slices,
    band_steps,
    censored_median,
    family_ratios,
    first_crossing,
    learning_order,
    paper_expectation,
    ratio,
    run_metrics,
    steps_to_threshold,
    summarize_groups,
)
from probes.analysis.rundir import load_run  # noqa: E402


def test_first_crossing() -> None:
    assert first_crossing([0.1, 0.94, 0.95, 0.99], 0.95) == 2
    assert first_crossing([0.1, math.nan, 0.2], 0.95) is None
    assert first_crossing([], 0.5) is None


def test_band_slices_are_contiguous_and_near_equal() -> None:
    assert [(s.start, s.stop) for s in band_slices(200)] == [(0, 67), (67, 134), (134, 200)]
    assert [(s.start, s.stop) for s in band_slices(9)] == [(0, 3), (3, 6), (6, 9)]
    assert [(s.start, s.stop) for s in band_slices(2)] == [(0, 1), (1, 2), (2, 2)]


def test_band_accuracy_mean_and_all() -> None:
    acc = np.array([[1.0, 0.9, 1.0, 0.2, 0.4, 0.6, 1.0, 1.0, math.nan]])
    np.testing.assert_allclose(band_accuracy(acc, "mean"), [[2.9 / 3, 0.4, 1.0]])
    np.testing.assert_allclose(band_accuracy(acc, "all"), [[0.9, 0.2, 1.0]])


def test_steps_and_samples_to_threshold(tmp_path: Path) -> None:
    acc = np.array([[0.2] * 3, [0.9] * 3, [0.96] * 3, [0.99] * 3])
    run = load_run(write_run(tmp_path, "r", acc, steps=[100, 200, 300, 400], max_steps=1000, batch_size=32))
    steps, samples = steps_to_threshold(run)
    assert steps == Value(300) and samples == Value(300 * 32)
    assert steps_to_threshold(run, 0.9) == (Value(200), Value(6400))
    steps, samples = steps_to_threshold(run, 0.995)  # never reached: censored at the last eval
    assert steps == Value(400, "lower") and samples == Value(400 * 32, "lower")
    assert str(steps) == ">400"


def test_band_steps_and_verdict_mamba_like(tmp_path: Path) -> None:
    # 9 positions; end band learns at eval 1, beginning at eval 4, middle at eval 7 (steps 20/50/80).
    reach = [4, 4, 4, 7, 7, 7, 1, 1, 1]
    run = load_run(write_run(tmp_path, "r", ramp(10, 9, reach), model="mamba-tiny", family="mamba"))
    assert band_steps(run) == {"beginning": Value(50), "middle": Value(80), "end": Value(20)}
    m = run_metrics(run)
    assert m.order == "end → beginning → middle"
    assert m.steps == Value(80) and m.reached


def test_band_criterion_all_is_stricter(tmp_path: Path) -> None:
    # one straggler position (index 0) in the beginning band reaches late
    acc = ramp(10, 9, [8, 2, 2, 2, 2, 2, 2, 2, 2])
    acc[:, 1:3] = np.where(acc[:, 1:3] == 1.0, 1.0, 0.5)
    acc[2:, 0] = np.where(np.arange(2, 10) >= 8, 1.0, 0.9)  # 0.9 from eval 2, 1.0 from eval 8
    run = load_run(write_run(tmp_path, "r", acc))
    assert band_steps(run, 0.95, "mean")["beginning"] == Value(30)  # (0.9 + 1 + 1)/3 = 0.967
    assert band_steps(run, 0.95, "all")["beginning"] == Value(90)


def test_learning_order_verdicts() -> None:
    v = Value
    assert learning_order({"beginning": v(100), "middle": v(110), "end": v(105)}, 10) == "uniform"
    assert (
        learning_order({"beginning": v(100), "middle": v(300), "end": v(105)}, 10)
        == "beginning = end → middle"
    )
    assert (
        learning_order({"beginning": v(200), "middle": v(300), "end": v(100)}, 10)
        == "end → beginning → middle"
    )
    assert (
        learning_order({"beginning": v(200), "middle": v(500, "lower"), "end": v(100)}, 10)
        == "end → beginning → (middle not reached)"
    )
    # all three reached but one band not within an interval of the first: no "uniform"
    assert (
        learning_order({"beginning": v(100), "middle": v(110), "end": v(111)}, 10)
        == "beginning = middle → end"
    )
    assert learning_order({b: v(5, "lower") for b in ("beginning", "middle", "end")}, 10) == "none reached"
    assert learning_order({"beginning": v(1), "middle": v(1), "end": v(1)}, 10, num_positions=2).startswith(
        "n/a"
    )


def test_paper_expectation() -> None:
    assert paper_expectation("gpt_neox", "suffix") == "uniform"
    assert paper_expectation("gpt_neox", "prefix") == "uniform"
    assert paper_expectation("mamba", "suffix") == "end → beginning → middle"
    assert paper_expectation("mamba", "prefix").startswith("not stated")
    assert paper_expectation("hybrid", "suffix") == "not in paper"
    assert paper_expectation("llama", "suffix") == "not in paper"  # the paper trained Pythia only


@pytest.mark.parametrize(
    ("transformer", "ssm"), [("llama", "mamba"), ("gpt2", "mamba2"), ("gpt_neox", "falcon_mamba"),
                             ("llama", "zamba2")]
)  # fmt: skip
def test_every_transformer_and_ssm_family_joins_the_ratios(
    tmp_path: Path, transformer: str, ssm: str
) -> None:
    """Families come from probes/families.py: a Llama run no longer drops out of the SSM/Transformer ratio."""
    runs = [
        load_run(
            write_run(tmp_path, f"t{s}", ramp(10, 3, [2] * 3), model="t", family=transformer, init_seed=s)
        )
        for s in range(3)
    ]
    runs += [
        load_run(write_run(tmp_path, f"s{s}", ramp(10, 3, [5] * 3), model="s", family=ssm, init_seed=s))
        for s in range(3)
    ]
    runs.append(load_run(write_run(tmp_path, "u", ramp(10, 3, [1] * 3), model="u", family="some_new_arch")))
    (r,) = family_ratios(summarize_groups(run_metrics(x) for x in runs))
    assert (r.ssm.key.model, r.transformer.key.model, r.ratio) == ("s", "t", Value(60 / 30))


def test_group_interval_counts_censored_runs_as_not_reached(tmp_path: Path) -> None:
    mamba, pythia = summarize_groups(run_metrics(r) for r in _grid(tmp_path))
    # mamba: 100, 120, not reached (censored at 200): median 120, the upper bound is "not reached"
    assert mamba.median_steps == Value(120) and mamba.steps_ci.estimate == 120
    assert mamba.steps_ci.low == 100 and mamba.steps_ci.high == math.inf and mamba.steps_ci.coverage == 0.75
    assert (pythia.steps_ci.estimate, pythia.steps_ci.low, pythia.steps_ci.high) == (50, 40, 60)


def test_censored_median() -> None:
    v = Value
    assert censored_median([v(3), v(1), v(2)]) == v(2)
    assert censored_median([v(4), v(1), v(2), v(3)]) == v(2.5)
    # censored values above the middle do not matter
    assert censored_median([v(1), v(2), v(100, "lower")]) == v(2)
    # a censored value at or below the middle makes the median a lower bound
    assert censored_median([v(1), v(100, "lower"), v(100, "lower")]) == v(100, "lower")
    assert censored_median([v(5, "lower"), v(50), v(60)]) == v(50, "lower")
    # ties: a censored value equal to the middle sorts after it
    assert censored_median([v(10), v(10, "lower"), v(10, "lower")]) == v(10, "lower")
    assert censored_median([v(10), v(10), v(10, "lower")]) == v(10)
    assert censored_median([]).bound == "unknown"


def test_ratio_bounds() -> None:
    v = Value
    assert ratio(v(300), v(100)) == v(3.0)
    assert ratio(v(300, "lower"), v(100)) == v(3.0, "lower")
    assert ratio(v(300), v(100, "lower")) == v(3.0, "upper")
    assert ratio(v(300, "lower"), v(100, "lower")).bound == "unknown"
    assert format(ratio(v(300, "lower"), v(100)), ".2f") == ">3.00"
    assert format(ratio(v(300, "lower"), v(100, "lower")), ".2f") == "?"


def _grid(root: Path) -> list:
    """Pythia: 3 runs reaching at steps 40/50/60 (uniformly); Mamba: 100, 120, and one never (max 200)."""
    runs = []
    for seed, reach in enumerate([3, 4, 5]):
        runs.append(write_run(root, f"p{seed}", ramp(20, 9, [reach] * 9), init_seed=seed, max_steps=200))
    for seed, reach in enumerate([9, 11]):
        order = [reach - 2] * 3 + [reach] * 3 + [reach - 6] * 3  # end, then beginning, then middle
        runs.append(
            write_run(
                root,
                f"m{seed}",
                ramp(20, 9, order),
                model="mamba-tiny",
                family="mamba",
                init_seed=seed,
                max_steps=200,
            )
        )
    never = ramp(20, 9, [30] * 6 + [3] * 3)
    runs.append(write_run(root, "m2", never, model="mamba-tiny", family="mamba", init_seed=2, max_steps=200))
    return [load_run(r) for r in runs]


def test_groups_medians_and_ratio(tmp_path: Path) -> None:
    runs = _grid(tmp_path)
    groups = summarize_groups(run_metrics(r) for r in runs)
    assert [g.key.model for g in groups] == ["mamba-tiny", "pythia-tiny"]
    mamba, pythia = groups
    assert [m.steps for m in mamba.runs] == [Value(100), Value(120), Value(200, "lower")]
    assert mamba.median_steps == Value(120) and mamba.n_reached == 2
    assert mamba.median_samples == Value(120 * 64)
    assert pythia.median_steps == Value(50) and pythia.order == "uniform" and pythia.agreement == 3
    # band medians: beginning (80, 100, >200) → 100; middle (100, 120, >200) → 120; end (40, 60, 40) → 40
    assert mamba.band_medians == {"beginning": Value(100), "middle": Value(120), "end": Value(40)}
    assert mamba.order == "end → beginning → middle" == mamba.expected
    assert mamba.agreement == 2
    (r,) = family_ratios(groups)
    assert (r.ssm.key.model, r.transformer.key.model, r.ratio) == (
        "mamba-tiny",
        "pythia-tiny",
        Value(120 / 50),
    )


def test_ratio_is_lower_bound_when_most_mamba_runs_do_not_reach(tmp_path: Path) -> None:
    runs = [load_run(write_run(tmp_path, f"p{s}", ramp(10, 3, [2, 2, 2]), init_seed=s)) for s in range(3)]
    runs += [
        load_run(
            write_run(
                tmp_path, f"m{s}", ramp(10, 3, [reach] * 3), model="mamba-tiny", family="mamba", init_seed=s
            )
        )
        for s, reach in enumerate([5, 20, 20])
    ]
    groups = summarize_groups(run_metrics(r) for r in runs)
    (r,) = family_ratios(groups)
    assert r.ssm.median_steps == Value(100, "lower")
    assert r.ratio == Value(100 / 30, "lower")


def test_threshold_override(tmp_path: Path) -> None:
    acc = np.array([[0.5] * 3, [0.85] * 3, [0.92] * 3, [0.97] * 3])
    run = load_run(write_run(tmp_path, "r", acc))
    assert run_metrics(run).steps == Value(40)
    assert run_metrics(run, threshold=0.8).steps == Value(20)
    m = run_metrics(run, threshold=0.8, band_threshold=0.9)
    assert m.band_steps["middle"] == Value(30)


def test_value_format() -> None:
    assert str(Value(78000, "lower")) == ">78000"
    assert str(Value(2.5)) == "2.5"
    assert format(Value(2.0, "upper"), ".2f") == "<2.00"
    assert str(Value(math.nan, "unknown")) == "?"


@pytest.mark.parametrize("criterion", ["median", ""])
def test_unknown_criterion(criterion: str) -> None:
    with pytest.raises(ValueError):
        band_accuracy(np.zeros((1, 3)), criterion)  # type: ignore[arg-type]
