"""Best-lr selection, the claims table and the learning-order tie tolerance, on hand-built run directories."""

from __future__ import annotations

import math
from pathlib import Path

from analysis_fixtures import ramp, write_run
from probes.analysis.best_lr import best_lrs, keep_best, per_lr
from probes.analysis.claims import difference_interval, judge_claims
from probes.analysis.metrics import run_metrics, summarize_groups, tie_tolerance
from probes.analysis.report import build_report, to_markdown
from probes.analysis.rundir import load_run

END_BEGIN_MIDDLE = [4, 4, 4, 8, 8, 8, 1, 1, 1]  # eval at which each of 9 positions reaches: end, beginning, middle


def _run(root: Path, name: str, reach: list[int], **kw) -> object:
    return load_run(write_run(root, name, ramp(30, 9, reach), max_steps=300, **kw))


def test_per_lr_table_and_best_lr_prefer_the_lower_exact_median(tmp_path: Path) -> None:
    runs = [_run(tmp_path, f"a{s}", [5] * 9, lr=1e-3, init_seed=s) for s in range(3)]
    runs += [_run(tmp_path, f"b{s}", [3] * 9, lr=3e-3, init_seed=s) for s in range(3)]
    runs += [_run(tmp_path, f"c{s}", [40] * 9, lr=3e-4, init_seed=s) for s in range(3)]  # never reaches
    metrics = [run_metrics(r) for r in runs]
    cells = per_lr(metrics)
    assert [(c.lr, c.reached, str(c.median)) for c in cells] == [(3e-4, 0, ">300"), (1e-3, 3, "60"), (3e-3, 3, "40")]
    (best,) = best_lrs(metrics).values()
    assert best == 3e-3
    assert {m.run.name for m in keep_best(metrics, best_lrs(metrics))} == {"b0", "b1", "b2"}
    # without the fast lr, a censored median loses to any exact one
    assert list(best_lrs([m for m in metrics if m.run.lr != 3e-3]).values()) == [1e-3]


def test_paired_difference_interval_handles_one_sided_censoring() -> None:
    iv, unsigned = difference_interval([(200, 100), (300, 100), (250, 100), (math.inf, 100), (220, 100)])
    assert unsigned == 0 and iv.n == 5 and iv.low == 100 and math.isinf(iv.high)
    assert abs(iv.coverage - (1 - 2 * 0.5**5)) < 1e-9  # [min, max] of 5: 93.75 %, not 95 %
    iv, unsigned = difference_interval([(100, math.inf), (100, 300), (100, 200), (math.inf, math.inf)])
    assert unsigned == 1 and iv.high < 0  # b slower in every signed pair
    iv, _ = difference_interval([(100, 200), (300, 200), (200, 200)])
    assert iv.low < 0 < iv.high


def _claim_grid(root: Path, mamba_reach: int, pythia_reach: int, seeds: int = 5) -> list:
    runs = []
    for s in range(seeds):
        runs.append(_run(root, f"p-{pythia_reach}-{s}", [pythia_reach + s % 2] * 9, init_seed=s))
        reach = [r + mamba_reach for r in END_BEGIN_MIDDLE]
        runs.append(_run(root, f"m-{mamba_reach}-{s}", reach, model="mamba-tiny", family="mamba", init_seed=s))
    return runs


def test_claims_supported_contradicted_and_inconclusive(tmp_path: Path) -> None:
    groups = summarize_groups(run_metrics(r) for r in _claim_grid(tmp_path / "a", 10, 3))
    claims = {c.claim: c for c in judge_claims(groups, "test regime")}
    faster = claims["Pythia faster than Mamba"]
    assert faster.verdict == "supported" and "93.8 %" in faster.evidence and faster.regime == "test regime"
    assert claims["Mamba learns end, then beginning, then middle"].verdict == "supported"
    # Mamba faster in every seed: the claim is contradicted
    groups = summarize_groups(run_metrics(r) for r in _claim_grid(tmp_path / "b", 0, 12))
    assert {c.claim: c.verdict for c in judge_claims(groups, "r")}["Pythia faster than Mamba"] == "contradicted"
    # three seeds, all one way: [min, max] covers only 75 %, too little to decide
    groups = summarize_groups(run_metrics(r) for r in _claim_grid(tmp_path / "c", 0, 1, seeds=3))
    assert {c.claim: c.verdict for c in judge_claims(groups, "r")}["Pythia faster than Mamba"] == "inconclusive"


def test_report_prints_claims_and_real_coverage(tmp_path: Path) -> None:
    md = to_markdown(build_report(_claim_grid(tmp_path, 10, 3)))
    assert "## Paper claims at this n" in md and "| Pythia faster than Mamba | L=9 suffix | supported |" in md
    assert "93.8 %" in md and "95 % CI" not in md and "95% CI" not in md


def test_tie_tolerance_is_a_share_of_the_budget_at_least_one_eval(tmp_path: Path) -> None:
    coarse = load_run(write_run(tmp_path, "a", ramp(10, 9, [1] * 9), eval_every=10, max_steps=3000))
    fine = load_run(write_run(tmp_path, "b", ramp(10, 9, [1] * 9), eval_every=10, max_steps=100))
    assert tie_tolerance(coarse) == 30 and tie_tolerance(fine) == 10
    # end at eval 1 (step 20), beginning at 3 (40), middle at 6 (70): 1 % of 3000 = 30 steps ties end and beginning
    acc = ramp(10, 9, [3, 3, 3, 6, 6, 6, 1, 1, 1])
    wide = run_metrics(load_run(write_run(tmp_path, "c", acc, eval_every=10, max_steps=3000)))
    narrow = run_metrics(load_run(write_run(tmp_path, "d", acc, eval_every=10, max_steps=100)))
    assert wide.order == "beginning = end → middle"
    assert narrow.order == "end → beginning → middle"
    assert run_metrics(load_run(tmp_path / "c"), tie_fraction=0.0).order == "end → beginning → middle"


def test_claims_difference_interval_has_the_coverage_it_prints() -> None:
    """Simulation: the paired-difference interval the claims table prints covers the true median difference
    as often as its stated coverage says (5 pairs: [min, max], 93.75 %), mirrored side included."""
    import numpy as np

    rng = np.random.default_rng(0)
    for shift, sign in ((300.0, 1), (-300.0, -1)):
        hits, stated = 0, set()
        for _ in range(4000):
            a = rng.lognormal(7.0, 0.3, 5) + shift * (sign > 0)
            b = rng.lognormal(7.0, 0.3, 5) - shift * (sign < 0)
            pairs = list(zip(a.tolist(), b.tolist(), strict=True))
            if sign < 0:  # one pair whose b never reached: the mirrored (b - a) path
                pairs[0] = (pairs[0][0], math.inf)
            iv, _ = difference_interval(pairs)
            stated.add(round(iv.coverage, 4))
            hits += iv.low <= shift <= iv.high
        assert stated == {0.9375}
        assert abs(hits / 4000 - 0.9375) < 0.02 or (sign < 0 and hits / 4000 >= 0.9375 - 0.02)
