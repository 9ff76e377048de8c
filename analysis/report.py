"""The paper's table: steps/samples to threshold per run, medians per group, Mamba/Pythia ratios, learning order,
and the claims table (:mod:`probes.analysis.claims`).

Every printed interval states its coverage and n (:class:`probes.analysis.intervals.Interval`): medians get the
exact order-statistic interval at its real coverage (93.8 % at n = 5, 75 % at n = 3, 'n/a' at n = 1), never a
nominal 95 % it does not have. With ``best_lr``, each (model, length, order) cell keeps the runs of its best
learning rate (:mod:`probes.analysis.best_lr`) and the per-lr medians are a table of their own.

One :class:`Report` is computed from run directories, then rendered three ways from the same numbers: rich
tables for the terminal, CSV files for further analysis (numbers and their censoring bound in separate
columns), and a Markdown file to paste into notes. Censoring markers: ``>x`` the true value is larger than x
(a run that did not reach the threshold, or a median depending on one), ``<x`` smaller, ``?`` unknown.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from probes.io import atomic_path

from .best_lr import LrCell, best_lrs, keep_best, per_lr
from .claims import PAPER_REGIME, Claim, judge_claims
from .intervals import Interval
from .metrics import (
    BANDS,
    TIE_FRACTION,
    Criterion,
    FamilyRatio,
    GroupSummary,
    RunMetrics,
    Value,
    family_ratios,
    run_metrics,
    summarize_groups,
)
from .rundir import Run

FILES = ("report.md", "report.csv", "report_groups.csv", "report_ratios.csv")


@dataclass(frozen=True)
class Report:
    runs: list[RunMetrics]
    groups: list[GroupSummary]
    ratios: list[FamilyRatio]
    threshold: float | None  # None: each run's own configured threshold
    band_threshold: float | None
    criterion: Criterion
    ci_level: float = 0.95
    tie_fraction: float = TIE_FRACTION
    lr_cells: tuple[LrCell, ...] = ()  # with best_lr: every lr of every cell (runs keeps the best lr's)
    claims: tuple[Claim, ...] = ()
    regime: str = ""


def build_report(
    runs: Sequence[Run],
    threshold: float | None = None,
    band_threshold: float | None = None,
    criterion: Criterion = "mean",
    ci_level: float = 0.95,
    tie_fraction: float = TIE_FRACTION,
    best_lr: bool = False,
    regime: str | None = None,
) -> Report:
    """Metrics per run, medians per group with their exact interval (nominal ``ci_level``, printed at the real
    coverage), learning order with ties within ``tie_fraction`` of the budget, and the claims table.
    ``best_lr``: each cell at its best learning rate. ``regime``: what the runs are (default: their models,
    lengths and lrs), printed beside every claim against the paper's regime."""
    metrics = [run_metrics(r, threshold, band_threshold, criterion, tie_fraction) for r in runs]
    cells: tuple[LrCell, ...] = ()
    if best_lr:
        cells = tuple(per_lr(metrics))
        metrics = keep_best(metrics, best_lrs(metrics))
    metrics.sort(
        key=lambda m: (
            m.run.task,
            m.run.length,
            m.run.order,
            m.run.model,
            m.run.lr,
            m.run.init_seed,
            m.run.name,
        )
    )
    groups = summarize_groups(metrics, level=ci_level, tie_fraction=tie_fraction)
    regime = regime if regime is not None else _regime(metrics, best_lr)
    claims = tuple(judge_claims(groups, regime, ci_level))
    return Report(metrics, groups, family_ratios(groups), threshold, band_threshold, criterion, ci_level,
                  tie_fraction, cells, claims, regime)


def _regime(metrics: Sequence[RunMetrics], best_lr: bool) -> str:
    models = sorted({m.run.model for m in metrics})
    lengths = sorted({m.run.length for m in metrics})
    lrs = sorted({m.run.lr for m in metrics})
    lr_text = "best of lrs " if best_lr else "lrs "
    return f"{', '.join(models)}; L = {'/'.join(map(str, lengths))}; {lr_text}{'/'.join(f'{x:g}' for x in lrs)}"


# --------------------------------------------------------------------------- rows (shared by every format)


def _reached_text(v: Value) -> str:
    return f"{v}" if v.exact else f"not reached ({v})"


def run_rows(report: Report) -> list[dict[str, Any]]:
    """Machine-readable per-run rows (CSV): empty steps/samples when not reached."""
    rows = []
    for m in report.runs:
        r = m.run
        row: dict[str, Any] = {
            "run": r.name,
            "model": r.model,
            "family": r.family,
            "task": r.task,
            "length": r.length,
            "order": r.order,
            "lr": r.lr,
            "init_strategy": r.config["model"]["init_strategy"],
            "init_seed": r.init_seed,
            "status": r.state,  # running / dead told apart (only with --include-unfinished)
            "threshold": m.threshold,
            "reached": m.reached,
            "steps_to_threshold": int(m.steps.value) if m.reached else "",
            "samples_to_threshold": int(m.samples.value) if m.reached else "",
            "observed_until_step": "" if m.reached else int(m.steps.value),
            "final_acc": f"{r.heldout_acc[-1]:.4f}" if r.evals else "",
            "best_acc": f"{r.heldout_acc.max():.4f}" if r.evals else "",
        }
        for b in BANDS:
            row[f"{b}_step"] = int(m.band_steps[b].value)
            row[f"{b}_bound"] = m.band_steps[b].bound
        row["learning_order"] = m.order
        row["path"] = str(r.path)
        rows.append(row)
    return rows


def group_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for g in report.groups:
        k = g.key
        row: dict[str, Any] = {
            "model": k.model,
            "family": k.family,
            "task": k.task,
            "length": k.length,
            "order": k.order,
            "runs": len(g.runs),
            "reached": g.n_reached,
            "median_steps": _num(g.median_steps),
            "median_steps_bound": g.median_steps.bound,
            "median_steps_ci_lo": _ci_num(g.steps_ci.low),
            "median_steps_ci_hi": _ci_num(g.steps_ci.high),
            "median_steps_ci_coverage": "" if g.steps_ci.coverage is None else round(g.steps_ci.coverage, 4),
            "median_samples": _num(g.median_samples),
            "median_samples_bound": g.median_samples.bound,
        }
        for b in BANDS:
            row[f"{b}_median_step"] = _num(g.band_medians[b])
            row[f"{b}_bound"] = g.band_medians[b].bound
        row |= {"learning_order": g.order, "censored_bands": g.censored_bands(), "runs_agreeing": g.agreement,
                "paper_expectation": g.expected}
        rows.append(row)
    return rows


def ratio_rows(report: Report) -> list[dict[str, Any]]:
    return [
        {
            "task": f.task,
            "length": f.length,
            "order": f.order,
            "ssm_model": f.ssm.key.model,
            "ssm_median_steps": _num(f.ssm.median_steps),
            "ssm_bound": f.ssm.median_steps.bound,
            "transformer_model": f.transformer.key.model,
            "transformer_median_steps": _num(f.transformer.median_steps),
            "transformer_bound": f.transformer.median_steps.bound,
            "ratio": "" if f.ratio.bound == "unknown" else round(f.ratio.value, 4),
            "ratio_bound": f.ratio.bound,
        }
        for f in report.ratios
    ]


def _ci_num(x: float | None) -> int | float | str:
    """A CI bound for CSV: ``inf`` (parsed as infinity by csv readers and pandas) when it is "not reached",
    empty when there is no interval (n = 1)."""
    if x is None:
        return ""
    if math.isinf(x):
        return "inf"
    return int(x) if float(x).is_integer() else round(x, 4)


def _ci_text(ci: Interval) -> str:
    """``[1860, 2490] (93.8 %, n=5)`` or ``n=1: interval n/a``: the interval with its real coverage."""
    return ci.format("{:.0f}")


def _num(v: Value) -> int | float | str:
    if v.bound == "unknown" and v.value != v.value:
        return ""
    return int(v.value) if float(v.value).is_integer() else round(v.value, 4)


# --------------------------------------------------------------------------- display tables


def _display_tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of human-readable cells, shared by the terminal and Markdown renderers."""
    runs = [
        [
            m.run.name,
            m.run.model,
            str(m.run.length),
            m.run.order,
            f"{m.run.lr:g}",
            str(m.run.init_seed),
            m.run.state,
            _reached_text(m.steps),
            _reached_text(m.samples),
            f"{m.run.heldout_acc[-1]:.3f}" if m.run.evals else "-",
            *(str(m.band_steps[b]) for b in BANDS),
            m.order,
        ]
        for m in report.runs
    ]
    groups = [
        [
            g.key.model,
            str(g.key.length),
            g.key.order,
            f"{g.n_reached}/{len(g.runs)}",
            str(g.median_steps),
            _ci_text(g.steps_ci),
            str(g.median_samples),
            *(str(g.band_medians[b]) for b in BANDS),
            g.order,
            g.censored_bands(),
            f"{g.agreement}/{len(g.runs)}",
            g.expected,
            _match(g),
        ]
        for g in report.groups
    ]
    lr_rows = [
        [c.key.model, str(c.key.length), c.key.order, f"{c.lr:g}", f"{c.reached}/{c.runs}", str(c.median),
         "best" if c.lr == best.get(c.key) else ""]
        for best in [{k: v for k, v in _best_of(report).items()}]
        for c in report.lr_cells
    ]
    claims = [[c.claim, c.setting, c.verdict, c.evidence, c.regime] for c in report.claims]
    ratios = [
        [
            str(f.length),
            f.order,
            f.ssm.key.model,
            f.transformer.key.model,
            str(f.ssm.median_steps),
            str(f.transformer.median_steps),
            format(f.ratio, ".2f"),
        ]
        for f in report.ratios
    ]
    bands = [f"{b} step" for b in BANDS]
    ci_header = "median [interval] (real coverage, n)"
    lr_table = [(
        "Steps to threshold per learning rate (each cell is reported at its best lr)",
        ["model", "L", "order", "lr", "reached", "median steps", "kept"],
        lr_rows,
    )] if report.lr_cells else []
    return [
        (
            "Runs",
            [
                "run",
                "model",
                "L",
                "order",
                "lr",
                "init",
                "status",
                "steps to thr.",
                "samples to thr.",
                "final acc",
                *bands,
                "learning order",
            ],
            runs,
        ),
        (
            "Medians per model, length and order",
            [
                "model",
                "L",
                "order",
                "reached",
                "median steps",
                ci_header,
                "median samples",
                *bands,
                "learning order",
                "censored bands",
                "runs agreeing",
                "paper",
                "match",
            ],
            groups,
        ),
        *lr_table,
        (
            "SSM / Transformer (Mamba / Pythia) ratio of median steps",
            ["L", "order", "SSM model", "Transformer model", "SSM median", "Transformer median", "ratio"],
            ratios,
        ),
        (
            f"Paper claims at this n (paper: {PAPER_REGIME})",
            ["claim", "setting", "verdict", "numbers", "regime here"],
            claims,
        ),
    ]


def _best_of(report: Report) -> dict[Any, float]:
    """The kept lr of every cell (the lr of its reported runs)."""
    return {g.key: g.runs[0].run.lr for g in report.groups if g.runs}


def _match(g: GroupSummary) -> str:
    """yes/no against the paper; ``-`` where it states nothing, ``?`` while a band has not reached (censored)."""
    if g.expected.startswith("not"):
        return "-"
    if "reached" in g.order or g.order.startswith("n/a"):
        return "?"
    return "yes" if g.order == g.expected else "no"


def _legend(report: Report) -> str:
    thr = "each run's configured threshold" if report.threshold is None else f"{report.threshold:g}"
    bthr = "the same" if report.band_threshold is None else f"{report.band_threshold:g}"
    crit = "band mean accuracy" if report.criterion == "mean" else "every position in the band"
    return (
        f"Threshold: {thr}. Learning order: first eval at which the {crit} reaches {bthr} threshold; bands are the "
        "first/middle/last third of target positions; bands whose crossings lie within "
        f"{report.tie_fraction:.0%} of the step budget (at least one eval interval) are tied ('='), 'uniform' = "
        "all three within it. 'censored bands': bands some runs never saw reach the threshold (their step is a "
        "lower bound). '>x': not reached / censored, the true value exceeds x; '<x' smaller than x; '?' unknown. "
        "Intervals: exact order-statistic (binomial) interval of the median over the group's runs, the "
        f"narrowest symmetric pair with coverage >= {report.ci_level:.0%}, else [min, max] at its real, lower "
        "coverage; the coverage printed is the real one (n=1: n/a). A run that did not reach counts as never "
        "reaching; an infinite bound means the data cannot bound the median there. Claims: paired by model "
        "seed, judged on the median paired difference's interval (analysis/claims.py)."
    )


# Columns the terminal leaves to report.md (per table): the run name already says model, length, order, lr
# and seed, and samples are steps times the batch size.
_TERMINAL_DROP: dict[str, set[str]] = {
    "Runs": {"model", "L", "order", "lr", "init", "samples to thr."},
    "Medians per model, length and order": {"median samples", "runs agreeing"},
}
_EMPTY_NOTE = "none: no SSM or hybrid runs share a task, length and order with Transformer runs"
_EMPTY_CLAIMS = "none: no Pythia (gpt_neox) and Mamba-1 runs share a task, length and order"


def _empty_note(title: str) -> str:
    return _EMPTY_CLAIMS if title.startswith("Paper claims") else _EMPTY_NOTE


def rich_tables(report: Report) -> list[Table]:
    """Compact terminal versions of the Markdown tables (the run table keeps the run name, not its parts)."""
    tables = []
    for title, header, rows in _display_tables(report):
        keep = [j for j, h in enumerate(header) if h not in _TERMINAL_DROP.get(title, set())]
        table = Table(
            title=title, title_justify="left", header_style="bold", caption=None if rows else _empty_note(title)
        )
        for j in keep:
            table.add_column(header[j], overflow="fold")
        for row in rows:
            table.add_row(*(row[j] for j in keep))
        tables.append(table)
    return tables


def to_markdown(report: Report) -> str:
    parts = ["# Probe report", "", _legend(report), ""]
    for title, header, rows in _display_tables(report):
        parts += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        parts += ["", f"_{_empty_note(title)}._"] if not rows else []
        parts.append("")
    return "\n".join(parts)


def to_csv(rows: Sequence[dict[str, Any]], header: Sequence[str] | None = None) -> str:
    buf = io.StringIO()
    fields = list(header if header is not None else rows[0].keys() if rows else [])
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write :data:`FILES` into ``out_dir``; all four are renamed into place only after all were written."""
    out_dir = Path(out_dir)
    texts = {
        "report.md": to_markdown(report),
        "report.csv": to_csv(run_rows(report)),
        "report_groups.csv": to_csv(group_rows(report)),
        "report_ratios.csv": to_csv(ratio_rows(report), _RATIO_HEADER),
    }
    with contextlib.ExitStack() as stack:
        for name in FILES:
            stack.enter_context(atomic_path(out_dir / name)).write_text(texts[name])
    return [out_dir / name for name in FILES]


_RATIO_HEADER = (
    "task",
    "length",
    "order",
    "ssm_model",
    "ssm_median_steps",
    "ssm_bound",
    "transformer_model",
    "transformer_median_steps",
    "transformer_bound",
    "ratio",
    "ratio_bound",
)
