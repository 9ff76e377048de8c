"""The paper's claims about Pythia and Mamba-1, each judged on a report's runs: supported, contradicted or
inconclusive at this n, with the numbers behind the verdict and the regime they come from.

The claims ("Shaking Up VLMs", §5.3, Fig. 6/7, App. Fig. 11/12), read on the grounding probe:

1. Pythia learns faster than Mamba (suffix layout);
2. Mamba needs about twice the data per doubling of the length (Pythia about the same at every length);
3. Mamba learns the end of the context first, then the beginning, then the middle (suffix);
4. the prefix layout (query first) helps Mamba;
5. Pythia is still faster than Mamba in the prefix layout.

Comparisons are *paired*: runs of two arms that share a model seed (and, in a grid with several lrs per
group, the lr) saw the same data in the same order, so the claim is judged on the per-seed differences. The
interval is the exact order-statistic interval of their median (:func:`probes.analysis.intervals.median_interval`)
at its real coverage: with 5 pairs the narrowest such interval is [min, max] at 93.8 %, so "supported" at
n = 5 means every seed agreed. A run that did not reach the threshold makes its difference one-sided (the
true steps exceed the budget): it enters as +inf on the side it is known to be on; pairs censored on both
sides carry no sign and are left out (and counted). Verdicts: the interval above 0 supports (or contradicts,
by the claim's direction), an interval containing 0, or one whose real coverage is under 90 % (fewer than 5
pairs), is inconclusive. Only Pythia (``gpt_neox``) and Mamba-1
(``mamba``) runs enter, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .intervals import Interval, median_interval
from .metrics import GroupSummary, RunMetrics

PAPER_REGIME = "Pythia-1.4B / Mamba-1.4B pretrained, fine-tuned, L = 50/100/200"
PYTHIA, MAMBA = "gpt_neox", "mamba"
LEARNING_ORDER = "end → beginning → middle"


@dataclass(frozen=True)
class Claim:
    """One claim judged in one setting (a length and order, or a pair of lengths)."""

    claim: str
    setting: str
    verdict: str  # supported / contradicted / inconclusive
    evidence: str
    regime: str


def _steps(m: RunMetrics) -> float:
    return m.steps.value if m.reached else math.inf


def _pair_key(runs: Sequence[RunMetrics]) -> str:
    """``init_seed`` when it is unique within each arm (the study's best-lr runs), else ``lr`` + seed."""
    return "seed" if len({m.run.init_seed for m in runs}) == len(runs) else "lr+seed"


def _key(m: RunMetrics, how: str) -> tuple[float, ...]:
    return (m.run.init_seed,) if how == "seed" else (m.run.lr, m.run.init_seed)


def paired_steps(a: Sequence[RunMetrics], b: Sequence[RunMetrics]) -> list[tuple[float, float]]:
    """(a, b) steps to threshold (+inf: not reached) of the runs sharing a model seed (and lr, in a grid)."""
    how = "seed" if _pair_key(a) == "seed" and _pair_key(b) == "seed" else "lr+seed"
    bs = {_key(m, how): _steps(m) for m in b}
    return [(_steps(m), bs[_key(m, how)]) for m in a if _key(m, how) in bs]


def difference_interval(pairs: Sequence[tuple[float, float]], level: float = 0.95) -> tuple[Interval | None, int]:
    """Median of ``a - b`` over the pairs with its exact interval, and how many pairs had no sign.

    A pair with one side not reached has a known sign and an unknown size: +inf on that side. Both orders of
    censoring at once cannot be put on one line of order statistics here (only +inf is allowed), so then
    the side with fewer such pairs is dropped too and counted as unsigned."""
    finite = [a - b for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    pos = sum(1 for a, b in pairs if math.isinf(a) and math.isfinite(b))  # a not reached: a - b > 0
    neg = sum(1 for a, b in pairs if math.isfinite(a) and math.isinf(b))  # b not reached: a - b < 0
    unsigned = sum(1 for a, b in pairs if math.isinf(a) and math.isinf(b))
    if pos and neg:
        unsigned += min(pos, neg)
        pos, neg = (pos, 0) if pos >= neg else (0, neg)
    if neg:  # interval of b - a (only +inf), then mirrored
        iv = median_interval([-d for d in finite] + [math.inf] * neg, level)
        low, high = (None, None) if not iv.available else (-iv.high, -iv.low)  # type: ignore[operator]
        return Interval(-iv.estimate, low, high, iv.coverage, iv.n, iv.method), unsigned
    if not finite and not pos:
        return None, unsigned
    return median_interval(finite + [math.inf] * pos, level), unsigned


#: A verdict other than inconclusive needs an interval whose real coverage is at least this: 5 pairs
#: ([min, max], 93.8 %) can decide, 3 pairs (75 %) cannot however they come out.
MIN_COVERAGE = 0.9


def decisive(iv: Interval | None) -> bool:
    return iv is not None and iv.coverage is not None and iv.coverage >= MIN_COVERAGE


def _verdict(iv: Interval | None, positive_supports: bool) -> str:
    if not decisive(iv) or not (iv.low > 0 or iv.high < 0):  # type: ignore[union-attr]
        return "inconclusive"
    return "supported" if (iv.low > 0) == positive_supports else "contradicted"


def _fmt(iv: Interval | None, unsigned: int, fmt: str = "{:.0f}") -> str:
    text = "no pairs" if iv is None else iv.format(fmt)
    return text + (f"; {unsigned} pair(s) not reached on both sides left out" if unsigned else "")


def _by(groups: Sequence[GroupSummary], family: str) -> dict[tuple[str, int, str], GroupSummary]:
    """The first group of a family per (task, length, order): the paper's one Pythia and one Mamba."""
    out: dict[tuple[str, int, str], GroupSummary] = {}
    for g in groups:
        if g.key.family == family:
            out.setdefault((g.key.task, g.key.length, g.key.order), g)
    return out


def judge_claims(groups: Sequence[GroupSummary], regime: str, level: float = 0.95) -> list[Claim]:
    """Every claim in every setting the groups allow (a claim whose arms are missing is not listed)."""
    pythia, mamba = _by(groups, PYTHIA), _by(groups, MAMBA)
    out: list[Claim] = []
    for where in sorted(set(pythia) & set(mamba)):
        task, length, order = where
        p, m = pythia[where], mamba[where]
        iv, unsigned = difference_interval(paired_steps(m.runs, p.runs), level)
        name = "Pythia faster than Mamba" if order == "suffix" else "Pythia still faster in prefix"
        out.append(Claim(name, f"L={length} {order}", _verdict(iv, True),
                         f"Mamba - Pythia steps, median over seeds: {_fmt(iv, unsigned)} "
                         f"({m.key.model} {m.median_steps} vs {p.key.model} {p.median_steps})", regime))
    for where in sorted(k for k in mamba if k[2] == "suffix"):
        g = mamba[where]
        agree = sum(r.order == LEARNING_ORDER for r in g.runs)
        censored = "reached" in g.order or g.order.startswith("n/a")
        verdict = ("supported" if g.order == LEARNING_ORDER and 2 * agree > len(g.runs)
                   else "inconclusive" if censored or 2 * agree == len(g.runs) else "contradicted")
        out.append(Claim("Mamba learns end, then beginning, then middle", f"L={where[1]} suffix", verdict,
                         f"median-band order '{g.order}'; {agree}/{len(g.runs)} runs show '{LEARNING_ORDER}'",
                         regime))
    for where in sorted(k for k in mamba if k[2] == "prefix"):
        suffix = mamba.get((where[0], where[1], "suffix"))
        if suffix is None:
            continue
        iv, unsigned = difference_interval(paired_steps(suffix.runs, mamba[where].runs), level)
        out.append(Claim("Prefix helps Mamba", f"L={where[1]}", _verdict(iv, True),
                         f"suffix - prefix steps, median over seeds: {_fmt(iv, unsigned)}", regime))
    out += _doubling(pythia, mamba, regime, level)
    return out


def _doubling(pythia: dict, mamba: dict, regime: str, level: float) -> list[Claim]:
    """Claim 2 between the shortest and the longest length of each order: per seed, the factor by which
    Mamba's steps grow per doubling of L, ``(s_long / s_short) ** (1 / log2(L_long / L_short))``."""
    out = []
    for order in sorted({k[2] for k in mamba}):
        lengths = sorted(k[1] for k in mamba if k[2] == order)
        if len(lengths) < 2:
            continue
        task = next(k[0] for k in mamba if k[2] == order)
        short, long_ = mamba[(task, lengths[0], order)], mamba[(task, lengths[-1], order)]
        per = 1.0 / math.log2(lengths[-1] / lengths[0])
        factors, unsigned = [], 0
        for a, b in paired_steps(long_.runs, short.runs):
            if math.isinf(b):
                unsigned += 1  # the short length not reached: no ratio
            else:
                factors.append(math.inf if math.isinf(a) else (a / b) ** per)
        if not factors:
            continue
        iv = median_interval(factors, level)
        verdict = "inconclusive" if not decisive(iv) else "supported" if iv.low <= 2 <= iv.high and iv.low > 1 else (
            "contradicted" if iv.high < 2 or iv.low > 2 else "inconclusive")
        p = _growth(pythia, task, order, lengths[0], lengths[-1], per, level)
        out.append(Claim("Mamba needs ~2x data per length doubling", f"L={lengths[0]}→{lengths[-1]} {order}",
                         verdict, f"Mamba factor per doubling {_fmt(iv, unsigned, '{:.2f}')}; Pythia {p}", regime))
    return out


def _growth(groups: dict, task: str, order: str, short: int, long_: int, per: float, level: float) -> str:
    a, b = groups.get((task, long_, order)), groups.get((task, short, order))
    if a is None or b is None:
        return "n/a"
    factors = [math.inf if math.isinf(x) else (x / y) ** per for x, y in paired_steps(a.runs, b.runs)
               if math.isfinite(y)]
    return median_interval(factors, level).format("{:.2f}") if factors else "n/a (short length not reached)"
