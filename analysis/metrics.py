"""The paper's numbers, as pure functions of loaded runs: steps to threshold, medians, ratios, learning order.

Censoring is explicit. A run that never reached the threshold has no "steps to threshold"; all we know is
that the true value exceeds the last step it was evaluated at (``max_steps`` for a run that used its whole
budget). Such a value is a :class:`Value` with ``bound="lower"`` and prints as ``>78000``. A median that
depends on a censored value is itself only a lower bound, and a ratio of bounds is a bound in the direction
the algebra gives (or ``unknown`` when both sides are censored). Nothing is ever silently imputed.

Learning order (README "Figures and reports"): positions ``0 … L-1`` split into three contiguous near-equal bands (``beginning``,
``middle``, ``end``; ``numpy.array_split`` sizes, e.g. 67/67/66 for L = 200). A band "reaches" the threshold at
the first evaluation where the **mean** of its per-position accuracies is ≥ the threshold. The mean is the
default because, with exactly balanced target positions, it *is* the band's held-out accuracy — the same
quantity the run-level threshold uses, restricted to a band. The stricter ``"all"`` criterion (every position
in the band ≥ threshold) is available, but one position has only N/L held-out samples (≈500 at the paper's
defaults, a standard error of ≈1 point near 95%), so a single noisy position would set the whole band's step.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from probes.families import has_ssm_layers, is_transformer

from .intervals import Interval, median_interval
from .rundir import Run

Bound = Literal["exact", "lower", "upper", "unknown"]
Criterion = Literal["mean", "all"]
BANDS: tuple[str, str, str] = ("beginning", "middle", "end")
_MARK = {"exact": "", "lower": ">", "upper": "<", "unknown": "?"}


@dataclass(frozen=True)
class Value:
    """A number that may be censored: ``lower`` means the truth is larger, ``upper`` smaller."""

    value: float
    bound: Bound = "exact"

    @property
    def exact(self) -> bool:
        return self.bound == "exact"

    @property
    def marker(self) -> str:
        return _MARK[self.bound]

    def __format__(self, spec: str) -> str:
        """``f"{v:.2f}"`` formats the number and prefixes the bound marker (``>``, ``<`` or ``?``)."""
        if math.isnan(self.value) or self.bound == "unknown":
            return "?"  # e.g. a ratio of two censored medians: neither its size nor a bound is known
        if not spec:
            spec = "d" if float(self.value).is_integer() else ".1f"
        number = int(self.value) if spec.endswith("d") else self.value
        return self.marker + format(number, spec)

    def __str__(self) -> str:
        return format(self, "")


# --------------------------------------------------------------------------- single trajectories


def first_crossing(values: Sequence[float] | np.ndarray, threshold: float) -> int | None:
    """Index of the first value ≥ ``threshold`` (NaN never crosses); None when none does."""
    arr = np.asarray(values, dtype=np.float64)
    hits = np.flatnonzero(np.nan_to_num(arr, nan=-np.inf) >= threshold)
    return int(hits[0]) if hits.size else None


def band_slices(num_positions: int) -> list[slice]:
    """Three contiguous near-equal bands of ``range(num_positions)`` (the first bands take the remainder)."""
    sizes = [len(chunk) for chunk in np.array_split(np.arange(num_positions), len(BANDS))]
    starts = np.cumsum([0, *sizes[:-1]])
    return [slice(int(s), int(s) + n) for s, n in zip(starts, sizes, strict=True)]


def band_accuracy(accuracy: np.ndarray, criterion: Criterion = "mean") -> np.ndarray:
    """``[E, 3]``: per eval, each band's mean accuracy (``mean``) or its worst position (``all``).

    Under ``all`` a band reaches the threshold exactly when its minimum does; NaN (a bucket with no held-out
    sample) is ignored by both criteria. An empty band (L < 3) is NaN and never reaches.
    """
    if criterion not in ("mean", "all"):
        raise ValueError(f"unknown band criterion {criterion!r}")
    out = np.full((accuracy.shape[0], len(BANDS)), np.nan)
    reduce = np.nanmean if criterion == "mean" else np.nanmin
    for b, sl in enumerate(band_slices(accuracy.shape[1])):
        block = accuracy[:, sl]
        has_data = (~np.isnan(block)).any(axis=1) if block.shape[1] else np.zeros(len(block), bool)
        if has_data.any():
            out[has_data, b] = reduce(block[has_data], axis=1)
    return out


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunMetrics:
    """Everything the report says about one run, at one threshold."""

    run: Run
    threshold: float
    steps: Value  # steps to threshold, or a lower bound when not reached
    samples: Value
    band_steps: dict[str, Value]
    order: str  # learning-order verdict

    @property
    def reached(self) -> bool:
        return self.steps.exact


def observed_until(run: Run) -> tuple[int, int]:
    """(step, samples) of the last evaluation: what a run that has not reached is censored at."""
    if not run.evals:
        return 0, 0
    return int(run.steps[-1]), int(run.samples_seen[-1])


def steps_to_threshold(run: Run, threshold: float | None = None) -> tuple[Value, Value]:
    """(steps, samples) at the first eval with held-out accuracy ≥ threshold (default: the run's own)."""
    t = run.threshold if threshold is None else threshold
    i = first_crossing(run.heldout_acc, t)
    if i is not None:
        return Value(int(run.steps[i])), Value(int(run.samples_seen[i]))
    step, samples = observed_until(run)
    return Value(step, "lower"), Value(samples, "lower")


def band_steps(run: Run, threshold: float | None = None, criterion: Criterion = "mean") -> dict[str, Value]:
    """Per band, the first eval step whose band accuracy (see :func:`band_accuracy`) ≥ threshold."""
    t = run.threshold if threshold is None else threshold
    per_band = band_accuracy(run.accuracy, criterion)
    last, _ = observed_until(run)
    out: dict[str, Value] = {}
    for b, name in enumerate(BANDS):
        i = first_crossing(per_band[:, b], t)
        out[name] = Value(int(run.steps[i])) if i is not None else Value(last, "lower")
    return out


#: Bands whose first crossings lie within this share of the step budget are tied: the paper evaluates every
#: 1 % of the budget and reads the learning order off those ticks (§5.3, Fig. 7), so crossings inside one of
#: its ticks cannot be told apart there either.
TIE_FRACTION = 0.01


def tie_tolerance(run: Run, fraction: float = TIE_FRACTION) -> int:
    """Steps within which two bands count as tied: ``fraction`` of the run's budget, at least one eval interval
    (the finest difference the run's own evaluations can show)."""
    budget = int(run.config.get("train", {}).get("max_steps", 0) or 0)
    return max(run.eval_interval, int(round(fraction * budget)))


def run_metrics(
    run: Run,
    threshold: float | None = None,
    band_threshold: float | None = None,
    criterion: Criterion = "mean",
    tie_fraction: float = TIE_FRACTION,
) -> RunMetrics:
    """Steps/samples to ``threshold`` and learning order at ``band_threshold`` (both default to the run's);
    bands tie within :func:`tie_tolerance`."""
    t = run.threshold if threshold is None else threshold
    bt = t if band_threshold is None else band_threshold
    steps, samples = steps_to_threshold(run, t)
    bands = band_steps(run, bt, criterion)
    positions = run.num_positions if run.evals else None
    order = learning_order(bands, tie_tolerance(run, tie_fraction), positions)
    return RunMetrics(run, t, steps, samples, bands, order)


# --------------------------------------------------------------------------- verdicts


def learning_order(bands: Mapping[str, Value], interval: int, num_positions: int | None = None) -> str:
    """A readable verdict such as ``"end → beginning → middle"``.

    Bands that reach the threshold within ``interval`` steps of the first band of their group are tied
    (``"beginning = end"``); ``"uniform"`` means all three reached within ``interval`` of each other.
    Bands that never reached (censored steps) are listed last as ``"(… not reached)"``.
    """
    if num_positions is not None and num_positions < len(BANDS):
        return "n/a (fewer than 3 positions)"
    reached = sorted((v.value, BANDS.index(name), name) for name, v in bands.items() if v.exact)
    missing = [name for name in BANDS if name in bands and not bands[name].exact]
    if not reached:
        return "none reached"
    if not missing and reached[-1][0] - reached[0][0] <= interval:
        return "uniform"
    groups: list[list[tuple[float, int, str]]] = []
    for item in reached:
        if groups and item[0] - groups[-1][0][0] <= interval:
            groups[-1].append(item)
        else:
            groups.append([item])
    parts = [" = ".join(name for _, _, name in sorted(g, key=lambda x: x[1])) for g in groups]
    if missing:
        parts.append(f"({', '.join(missing)} not reached)")
    return " → ".join(parts)


def paper_expectation(family: str, order: str) -> str:
    """What "Shaking Up VLMs" (§5.3, Fig. 7/12) reports for this family and layout, or why it says nothing.

    The paper trained Pythia (``gpt_neox``) and Mamba-1 (``mamba``) only; other Transformers (a Llama, say)
    get no expectation rather than Pythia's, so a "match" column never claims more than the paper shows.
    """
    if family == "gpt_neox":
        return "uniform"
    if family == "mamba" and order == "suffix":
        return "end → beginning → middle"
    if family == "mamba":
        return "not stated (report what is seen)"
    return "not in paper"


# --------------------------------------------------------------------------- aggregation


def censored_median(values: Sequence[Value]) -> Value:
    """Median of possibly lower-censored values; a lower bound whenever a censored value could move it.

    Censored values sort after exact ones of equal value (their truth is larger). The median is exact only
    if every censored value sorts strictly after the middle element(s): raising such values cannot change it.
    """
    if not values:
        return Value(math.nan, "unknown")
    if any(v.bound in ("upper", "unknown") for v in values):
        raise ValueError("censored_median handles exact and lower-bounded values only")
    ordered = sorted(values, key=lambda v: (v.value, not v.exact))
    n = len(ordered)
    middle = ordered[(n - 1) // 2 : n // 2 + 1]
    med = statistics.fmean(v.value for v in middle)
    upper_mid = n // 2
    exact = all(v.exact for v in ordered[: upper_mid + 1])
    return Value(med, "exact" if exact else "lower")


def ratio(numerator: Value, denominator: Value) -> Value:
    """``numerator / denominator`` with the bound that follows from the operands' bounds (positive values)."""
    if denominator.value <= 0 or math.isnan(numerator.value) or math.isnan(denominator.value):
        return Value(math.nan, "unknown")
    r = numerator.value / denominator.value
    kinds = {numerator.bound, denominator.bound}
    if kinds == {"exact"}:
        return Value(r)
    if numerator.bound in ("exact", "lower") and denominator.bound in ("exact", "upper"):
        return Value(r, "lower")
    if numerator.bound in ("exact", "upper") and denominator.bound in ("exact", "lower"):
        return Value(r, "upper")
    return Value(r, "unknown")


@dataclass(frozen=True, order=True)
class GroupKey:
    task: str
    length: int
    order: str
    model: str
    family: str = field(compare=False)

    def __str__(self) -> str:
        return f"{self.model} {self.task} L={self.length} {self.order}"


@dataclass(frozen=True)
class GroupSummary:
    """Medians over the runs (lrs × init seeds) of one model, task, length and layout."""

    key: GroupKey
    runs: list[RunMetrics]
    median_steps: Value
    median_samples: Value
    band_medians: dict[str, Value]
    order: str  # verdict from the band medians
    agreement: int  # runs whose own verdict equals ``order``
    expected: str
    steps_ci: Interval  # exact order-statistic interval of the median steps at its real coverage; inf = not reached

    @property
    def n_reached(self) -> int:
        return sum(m.reached for m in self.runs)

    def censored_bands(self) -> str:
        """Bands some run never saw reach the band threshold (their steps are lower bounds), with how many
        runs: ``"middle (2/5)"``; ``"none"`` when every band of every run was observed."""
        parts = [f"{b} ({n}/{len(self.runs)})" for b in BANDS
                 if (n := sum(not m.band_steps[b].exact for m in self.runs))]
        return ", ".join(parts) if parts else "none"


def group_key(run: Run) -> GroupKey:
    return GroupKey(run.task, run.length, run.order, run.model, run.family)


def censored_as_inf(values: Iterable[Value]) -> list[float]:
    """Exact values as they are, lower-censored ones (not reached) as ``inf``: the input of the intervals.

    Exact for order statistics when every censored value exceeds every exact one (a run that used its whole
    budget without reaching): ``inf`` then sorts where the truth does."""
    return [v.value if v.exact else math.inf for v in values]


def summarize_groups(
    metrics: Iterable[RunMetrics], level: float = 0.95, tie_fraction: float = TIE_FRACTION
) -> list[GroupSummary]:
    """One :class:`GroupSummary` per (task, length, order, model), sorted.

    ``steps_ci`` is the exact order-statistic (binomial) interval of the median steps to threshold over the
    group's runs (:func:`probes.analysis.intervals.median_interval`): the narrowest symmetric pair of order
    statistics with coverage >= ``level``, or [min, max] at its real, lower coverage when n is too small;
    runs that did not reach count as never reaching. Learning-order ties: :func:`tie_tolerance` (the largest
    of the group's runs).
    """
    groups: dict[GroupKey, list[RunMetrics]] = {}
    for m in metrics:
        groups.setdefault(group_key(m.run), []).append(m)
    out = []
    for key in sorted(groups):
        ms = groups[key]
        bands = {b: censored_median([m.band_steps[b] for m in ms]) for b in BANDS}
        tol = max(tie_tolerance(m.run, tie_fraction) for m in ms)
        sizes = [m.run.num_positions for m in ms if m.run.evals]
        verdict = learning_order(bands, tol, min(sizes) if sizes else None)
        out.append(
            GroupSummary(
                key=key,
                runs=ms,
                median_steps=censored_median([m.steps for m in ms]),
                median_samples=censored_median([m.samples for m in ms]),
                band_medians=bands,
                order=verdict,
                agreement=sum(m.order == verdict for m in ms),
                expected=paper_expectation(key.family, key.order),
                steps_ci=median_interval(censored_as_inf(m.steps for m in ms), level),
            )
        )
    return out


@dataclass(frozen=True)
class FamilyRatio:
    """Median steps of an SSM-family model over a Transformer's, on the same task, length and layout."""

    task: str
    length: int
    order: str
    ssm: GroupSummary
    transformer: GroupSummary
    ratio: Value


def family_ratios(groups: Sequence[GroupSummary]) -> list[FamilyRatio]:
    """Mamba/Pythia ratios: every (SSM or hybrid model, Transformer model) pair sharing task, length and order.

    Which family is which comes from :mod:`probes.families`, so a Llama is a Transformer here too.
    """
    out = []
    for s in groups:
        if not has_ssm_layers(s.key.family):
            continue
        for t in groups:
            same = (t.key.task, t.key.length, t.key.order) == (s.key.task, s.key.length, s.key.order)
            if same and is_transformer(t.key.family):
                out.append(
                    FamilyRatio(
                        s.key.task, s.key.length, s.key.order, s, t, ratio(s.median_steps, t.median_steps)
                    )
                )
    return out
