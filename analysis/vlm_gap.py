"""The grounding-gap report (paper Table 2, Fig. 4 / Table 11) from VLM evaluation directories.

Input: ``scores.json`` files (CONTRACTS "Evaluation output"), one per model × benchmark. Output numbers:

- the score of every benchmark for every model, benchmarks grouped by task group;
- per model and group, the **sum** of its benchmark scores (Table 2's group rows);
- per group, **Pythia − Mamba**: for each pair of a ``gpt_neox`` model and a Mamba-like model (``mamba``,
  ``mamba2``, ``hybrid``) evaluated in the same setting (encoder, connector, task-aware flag, resolution),
  the sum over the group's benchmarks that both have of ``pythia − mamba``. A positive number means the
  Transformer is ahead: the paper's "grounding gap" is a large positive grounding difference;
- **task-aware vs task-agnostic relative gains**: for a model evaluated both ways, ``100 · (aware −
  agnostic) / agnostic`` per benchmark and per group sum.

Rendered as a rich table, ``report.md``, ``report.csv`` (one tidy row per number) and ``gains.png/pdf``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.table import Table

from probes.errors import UserError
from probes.families import has_ssm_layers, is_transformer
from probes.io import atomic_write_text

TASK_GROUPS = ("grounding", "reading", "captioning", "vqa", "other")
FILES = ("report.md", "report.csv", "gains.png", "gains.pdf")


@dataclass(frozen=True)
class ModelKey:
    """What identifies an evaluated model; two ``scores.json`` files with equal keys are one model."""

    backbone: str
    family: str
    encoder: str
    connector: str
    task_aware: bool
    resolution: int | None
    label: str = ""  # display name, filled in by :func:`build_gap_report`

    @property
    def identity(self) -> tuple[Any, ...]:
        return (self.backbone, self.family, self.encoder, self.connector, self.task_aware, self.resolution)

    @property
    def setting(self) -> tuple[Any, ...]:
        """Everything but the language model: what a Pythia/Mamba pair must share."""
        return (self.encoder, self.connector, self.task_aware, self.resolution)


@dataclass(frozen=True)
class ScoreRecord:
    benchmark: str
    task_group: str
    metric: str
    score: float
    n: int
    model: ModelKey
    path: Path


@dataclass(frozen=True)
class GroupDifference:
    """Σ over ``benchmarks`` of (pythia − mamba) scores in ``task_group``."""

    task_group: str
    pythia: ModelKey
    mamba: ModelKey
    value: float
    benchmarks: tuple[str, ...]


@dataclass(frozen=True)
class Gain:
    """Relative gain (%) of the task-aware over the task-agnostic variant; ``benchmark`` ``None`` = group sum."""

    model: ModelKey  # the task-aware model
    task_group: str
    benchmark: str | None
    aware: float
    agnostic: float
    relative_gain: float  # percent; nan when the agnostic score is 0


@dataclass(frozen=True)
class GapReport:
    models: list[ModelKey]
    benchmarks: list[tuple[str, str, str]]  # (task_group, benchmark, metric), in display order
    scores: dict[tuple[tuple[Any, ...], str], float]  # (model identity, benchmark) → score
    group_sums: dict[
        tuple[tuple[Any, ...], str], tuple[float, int]
    ]  # (identity, group) → (sum, n benchmarks)
    differences: list[GroupDifference]
    gains: list[Gain]

    def score(self, model: ModelKey, benchmark: str) -> float | None:
        return self.scores.get((model.identity, benchmark))


# --------------------------------------------------------------------------------------------- loading


def _require(obj: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in obj:
        raise UserError(f"{path}: missing key {key!r} (not a probes VLM scores.json)")
    return obj[key]


def read_scores(path: Path) -> ScoreRecord:
    """Parse and validate one ``scores.json``; any problem is a one-line :class:`UserError`."""
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object")
    if _require(obj, "schema_version", path) != 1:
        raise UserError(f"{path}: unsupported schema_version {obj['schema_version']!r} (expected 1)")
    group = _require(obj, "task_group", path)
    if group not in TASK_GROUPS:
        raise UserError(f"{path}: task_group {group!r} is not one of {', '.join(TASK_GROUPS)}")
    score = _require(obj, "score", path)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise UserError(f"{path}: score must be a finite number, got {score!r}")
    model = _require(obj, "model", path)
    if not isinstance(model, dict):
        raise UserError(f"{path}: 'model' must be an object")
    resolution = obj.get("resolution")
    key = ModelKey(
        backbone=str(_require(model, "backbone", path)),
        family=str(_require(model, "family", path)),
        encoder=str(model.get("encoder", "")),
        connector=str(model.get("connector", "")),
        task_aware=bool(_require(model, "task_aware", path)),
        resolution=int(resolution) if resolution is not None else None,
    )
    return ScoreRecord(
        benchmark=str(_require(obj, "benchmark", path)),
        task_group=group,
        metric=str(obj.get("metric", "")),
        score=float(score),
        n=int(obj.get("n", 0)),
        model=key,
        path=path,
    )


def find_score_files(paths: Iterable[str | Path]) -> list[Path]:
    """Each path is an eval directory, a ``scores.json``, or a folder searched recursively for them."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append(p)
        elif (p / "scores.json").is_file():
            found.append(p / "scores.json")
        elif p.is_dir():
            nested = sorted(p.rglob("scores.json"))
            if not nested:
                raise UserError(f"{p} contains no scores.json (run `probes vlm eval` first)")
            found.extend(nested)
        else:
            raise UserError(f"{p} does not exist")
    return sorted(set(found), key=str)


def load_scores(paths: Iterable[str | Path]) -> list[ScoreRecord]:
    records = [read_scores(p) for p in find_score_files(paths)]
    if not records:
        raise UserError("no scores.json given")
    return records


# --------------------------------------------------------------------------------------------- numbers


def _labels(models: Sequence[ModelKey]) -> list[ModelKey]:
    """Backbone name, plus only the fields that tell models apart (e.g. ``TA``, connector, resolution)."""

    def varies(attr: str) -> bool:
        return len({getattr(m, attr) for m in models}) > 1

    out = []
    for m in models:
        extras = []
        if varies("encoder"):
            extras.append(m.encoder)
        if varies("connector"):
            extras.append(m.connector)
        if varies("resolution") and m.resolution is not None:
            extras.append(f"{m.resolution}px")
        if varies("task_aware"):
            extras.append("TA" if m.task_aware else "TAg")
        label = m.backbone + (f" ({', '.join(extras)})" if extras else "")
        out.append(replace(m, label=label))
    return out


def _model_order(m: ModelKey) -> tuple[Any, ...]:
    return (
        m.setting[0],
        m.setting[1],
        m.resolution or 0,
        m.task_aware,
        not is_transformer(m.family),
        m.backbone,
    )


def _pairs(
    models: Sequence[ModelKey], explicit: Sequence[tuple[str, str]] | None
) -> list[tuple[ModelKey, ModelKey]]:
    by_setting: dict[tuple[Any, ...], list[ModelKey]] = defaultdict(list)
    for m in models:
        by_setting[m.setting].append(m)
    pairs: list[tuple[ModelKey, ModelKey]] = []
    for group in by_setting.values():
        pythias = [m for m in group if is_transformer(m.family)]
        mambas = [m for m in group if has_ssm_layers(m.family)]
        if explicit:
            for p_name, m_name in explicit:
                p = [m for m in pythias if m.backbone == p_name]
                s = [m for m in mambas if m.backbone == m_name]
                if p and s:
                    pairs.append((p[0], s[0]))
        elif len(pythias) == 1 and len(mambas) == 1:
            pairs.append((pythias[0], mambas[0]))
        elif pythias and mambas:
            names = ", ".join(sorted(m.backbone for m in pythias + mambas))
            raise UserError(
                f"several Transformer/Mamba models share one setting ({names}): say which to compare with "
                "--pair PYTHIA=MAMBA"
            )
    if explicit and not pairs:
        raise UserError(
            "no --pair matched a Transformer and a Mamba-like model evaluated in the same setting"
        )
    return pairs


def _relative(aware: float, agnostic: float) -> float:
    return 100.0 * (aware - agnostic) / agnostic if agnostic != 0 else math.nan


def build_gap_report(
    records: Sequence[ScoreRecord], pairs: Sequence[tuple[str, str]] | None = None
) -> GapReport:
    """All the report's numbers; ``pairs`` (backbone names, Pythia first) overrides automatic pairing."""
    scores: dict[tuple[tuple[Any, ...], str], float] = {}
    where: dict[tuple[tuple[Any, ...], str], Path] = {}
    models: dict[tuple[Any, ...], ModelKey] = {}
    bench_info: dict[str, tuple[str, str]] = {}
    for r in records:
        key = (r.model.identity, r.benchmark)
        if key in scores:
            raise UserError(f"two results for {r.model.backbone} on {r.benchmark}: {where[key]} and {r.path}")
        info = (r.task_group, r.metric)
        if bench_info.setdefault(r.benchmark, info) != info:
            raise UserError(
                f"benchmark {r.benchmark} has different task groups/metrics across files ({r.path})"
            )
        scores[key] = r.score
        where[key] = r.path
        models.setdefault(r.model.identity, r.model)

    model_list = _labels(sorted(models.values(), key=_model_order))
    benchmarks = sorted(
        ((g, b, m) for b, (g, m) in bench_info.items()), key=lambda x: (TASK_GROUPS.index(x[0]), x[1])
    )
    groups_present = [g for g in TASK_GROUPS if any(b[0] == g for b in benchmarks)]

    group_sums: dict[tuple[tuple[Any, ...], str], tuple[float, int]] = {}
    for m in model_list:
        for g in groups_present:
            vals = [
                scores[(m.identity, b)] for gg, b, _ in benchmarks if gg == g and (m.identity, b) in scores
            ]
            if vals:
                group_sums[(m.identity, g)] = (sum(vals), len(vals))

    differences: list[GroupDifference] = []
    for p, s in _pairs(model_list, pairs):
        for g in groups_present:
            common = [
                b for gg, b, _ in benchmarks
                if gg == g and (p.identity, b) in scores and (s.identity, b) in scores
            ]  # fmt: skip
            if common:
                value = sum(scores[(p.identity, b)] - scores[(s.identity, b)] for b in common)
                differences.append(GroupDifference(g, p, s, value, tuple(common)))

    gains: list[Gain] = []
    by_base: dict[tuple[Any, ...], dict[bool, ModelKey]] = defaultdict(dict)
    for m in model_list:
        by_base[(m.backbone, m.family, m.encoder, m.connector, m.resolution)][m.task_aware] = m
    for variants in by_base.values():
        if True not in variants or False not in variants:
            continue
        aware, agnostic = variants[True], variants[False]
        for g in groups_present:
            common = [
                b for gg, b, _ in benchmarks
                if gg == g and (aware.identity, b) in scores and (agnostic.identity, b) in scores
            ]  # fmt: skip
            for b in common:
                a, n = scores[(aware.identity, b)], scores[(agnostic.identity, b)]
                gains.append(Gain(aware, g, b, a, n, _relative(a, n)))
            if common:
                a = sum(scores[(aware.identity, b)] for b in common)
                n = sum(scores[(agnostic.identity, b)] for b in common)
                gains.append(Gain(aware, g, None, a, n, _relative(a, n)))
    return GapReport(model_list, benchmarks, scores, group_sums, differences, gains)


# --------------------------------------------------------------------------------------------- rendering


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if math.isnan(v):
        return "n/a"
    return f"{v:.2f}"


def _signed(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.2f}"


def score_table_rows(report: GapReport) -> list[list[str]]:
    """Rows ``[group, benchmark, metric, score per model…]`` with a ``Σ group`` row closing each group."""
    rows: list[list[str]] = []
    for g in TASK_GROUPS:
        bench = [b for b in report.benchmarks if b[0] == g]
        if not bench:
            continue
        for _, b, metric in bench:
            rows.append([g, b, metric] + [_fmt(report.score(m, b)) for m in report.models])
        sums = [report.group_sums.get((m.identity, g)) for m in report.models]
        rows.append([g, f"Σ {g}", ""] + [_fmt(s[0]) if s else "–" for s in sums])
    return rows


def difference_rows(report: GapReport) -> list[list[str]]:
    return [
        [d.task_group, d.pythia.label, d.mamba.label, _signed(d.value), str(len(d.benchmarks))]
        for d in report.differences
    ]


def _base_label(label: str) -> str:
    """``pythia-1b (TA)`` → ``pythia-1b``: a gain row already means task-aware over task-agnostic."""
    return label.replace(" (TA)", "").replace(", TA)", ")")


def gain_rows(report: GapReport) -> list[list[str]]:
    return [
        [_base_label(g.model.label), g.task_group, g.benchmark or f"Σ {g.task_group}", _fmt(g.agnostic), _fmt(g.aware),
         _signed(g.relative_gain)]
        for g in report.gains
    ]  # fmt: skip


def rich_tables(report: GapReport) -> list[Table]:
    """Scores (with group sums), Pythia − Mamba differences, task-aware gains — for the terminal."""
    scores = Table(title="VLM scores per benchmark (Σ = task-group sum)")
    for col in ("group", "benchmark", "metric"):
        scores.add_column(col)
    for m in report.models:
        scores.add_column(m.label, justify="right")
    for row in score_table_rows(report):
        scores.add_row(*row, style="bold" if row[1].startswith("Σ") else None)
    tables = [scores]
    if report.differences:
        diff = Table(title="Pythia − Mamba per task group (positive: Transformer ahead)")
        for col in ("group", "pythia", "mamba", "difference", "benchmarks"):
            diff.add_column(col, justify="right" if col in ("difference", "benchmarks") else "left")
        for row in difference_rows(report):
            diff.add_row(*row)
        tables.append(diff)
    if report.gains:
        gain = Table(title="Task-aware vs task-agnostic: relative gain (%)")
        for col in ("model", "group", "benchmark", "agnostic", "aware", "gain %"):
            gain.add_column(col, justify="right" if col in ("agnostic", "aware", "gain %") else "left")
        for row in gain_rows(report):
            gain.add_row(*row)
        tables.append(gain)
    return tables


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report_markdown(report: GapReport) -> str:
    parts = [
        "# Grounding-gap report",
        "",
        "Scores in the benchmarks' usual units (accuracy %, CIDEr × 100); Σ rows sum a model's benchmarks of "
        "one task group (Table 2 style).",
        "",
        _md_table(
            ["group", "benchmark", "metric"] + [m.label for m in report.models], score_table_rows(report)
        ),
    ]
    if report.differences:
        parts += [
            "",
            "## Pythia − Mamba per task group",
            "",
            "Sum over the group's benchmarks that both models have; positive means the Transformer is ahead.",
            "",
            _md_table(["group", "pythia", "mamba", "difference", "benchmarks"], difference_rows(report)),
        ]
    if report.gains:
        parts += [
            "",
            "## Task-aware vs task-agnostic (relative gain, %)",
            "",
            "`100 · (aware − agnostic) / agnostic`, per benchmark and per group sum (Fig. 4 / Table 11 style).",
            "",
            _md_table(["model", "group", "benchmark", "agnostic", "aware", "gain %"], gain_rows(report)),
        ]
    return "\n".join(parts) + "\n"


def report_csv(report: GapReport) -> str:
    """Tidy rows: ``kind`` ∈ {score, group_sum, difference, gain, group_gain} with the model(s) involved."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "task_group", "benchmark", "metric", "model", "family", "task_aware", "resolution",
                "other_model", "value", "n_benchmarks"])  # fmt: skip
    for m in report.models:
        for g, b, metric in report.benchmarks:
            v = report.score(m, b)
            if v is not None:
                w.writerow(
                    ["score", g, b, metric, m.label, m.family, m.task_aware, m.resolution, "", repr(v), 1]
                )
        for g in TASK_GROUPS:
            s = report.group_sums.get((m.identity, g))
            if s:
                w.writerow(
                    [
                        "group_sum",
                        g,
                        "",
                        "",
                        m.label,
                        m.family,
                        m.task_aware,
                        m.resolution,
                        "",
                        repr(s[0]),
                        s[1],
                    ]
                )
    for d in report.differences:
        p = d.pythia
        w.writerow(["difference", d.task_group, "", "", p.label, p.family, p.task_aware, p.resolution,
                    d.mamba.label, repr(d.value), len(d.benchmarks)])  # fmt: skip
    for gn in report.gains:
        m = gn.model
        kind = "gain" if gn.benchmark else "group_gain"
        w.writerow([kind, gn.task_group, gn.benchmark or "", "", _base_label(m.label), m.family, True, m.resolution, "",
                    repr(gn.relative_gain), 1])  # fmt: skip
    return buf.getvalue()


def plot_gains(report: GapReport, out_stem: Path) -> list[Path]:
    """Bar plot of relative gains per benchmark, one colour per backbone (Fig. 4 style); [] when none."""
    per_bench = [g for g in report.gains if g.benchmark is not None and not math.isnan(g.relative_gain)]
    if not per_bench:
        return []
    import seaborn as sns

    from .figure import new_figure, paper_style, save_figure

    order = [b for _, b, _ in report.benchmarks if any(g.benchmark == b for g in per_bench)]
    data = {
        "benchmark": [g.benchmark for g in per_bench],
        "gain": [g.relative_gain for g in per_bench],
        "model": [_base_label(g.model.label) for g in per_bench],
    }
    with paper_style():
        fig, (ax,) = new_figure(1, 1)
        fig.set_size_inches(max(4.0, 0.6 * len(order) + 1.5), 3.2)
        sns.barplot(data=data, x="benchmark", y="gain", hue="model", order=order, ax=ax)
        for bars in ax.containers:  # value labels on every bar
            ax.bar_label(bars, fmt="%+.1f", fontsize="x-small", padding=2)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xlabel("")
        ax.set_ylabel("task-aware gain (%)")
        ax.tick_params(axis="x", rotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.legend(title=None, fontsize="x-small")
        return save_figure(fig, out_stem)


def write_gap_report(report: GapReport, out_dir: str | Path) -> list[Path]:
    """Write ``report.md``, ``report.csv`` and (when there are task-aware pairs) ``gains.png/pdf``."""
    out = Path(out_dir)
    atomic_write_text(out / "report.md", report_markdown(report))
    atomic_write_text(out / "report.csv", report_csv(report))
    return [out / "report.md", out / "report.csv", *plot_gains(report, out / "gains")]


# --------------------------------------------------------------------------------------------- resolution


def resolution_rows(records: Sequence[ScoreRecord]) -> list[dict[str, Any]]:
    """One row per (model, benchmark, resolution), for the resolution study (Fig. 3 style)."""
    models = _labels(
        sorted(
            {r.model.identity: replace(r.model, resolution=None) for r in records}.values(), key=_model_order
        )
    )
    label = {m.identity: m.label for m in models}
    rows = [
        {
            "model": label[replace(r.model, resolution=None).identity],
            "benchmark": r.benchmark,
            "metric": r.metric,
            "resolution": r.model.resolution,
            "score": r.score,
            "path": str(r.path),
        }
        for r in records
    ]
    return sorted(rows, key=lambda x: (x["model"], x["benchmark"], x["resolution"] or 0))


def plot_resolution(records: Sequence[ScoreRecord], out_stem: str | Path) -> list[Path]:
    """Score vs input resolution, one line per model, one panel per benchmark; writes PNG + PDF."""
    import seaborn as sns

    from .figure import new_figure, paper_style, save_figure

    rows = [r for r in resolution_rows(records) if r["resolution"] is not None]
    if not rows:
        raise UserError("no scores.json with a resolution to plot")
    benchmarks = sorted({r["benchmark"] for r in rows})
    with paper_style():
        fig, axes = new_figure(len(benchmarks), min(3, len(benchmarks)))
        for ax, b in zip(axes, benchmarks, strict=True):
            sub = [r for r in rows if r["benchmark"] == b]
            data = {k: [r[k] for r in sub] for k in ("resolution", "score", "model")}
            sns.lineplot(data=data, x="resolution", y="score", hue="model", marker="o", ax=ax)
            ax.set_title(b)
            ax.set_xticks(sorted({r["resolution"] for r in sub}))
            ax.set_xlabel("input resolution (px)")
            ax.set_ylabel(sub[0]["metric"])
            ax.legend(title=None, fontsize="x-small")
        return save_figure(fig, out_stem)


def resolution_csv(records: Sequence[ScoreRecord]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, ["model", "benchmark", "metric", "resolution", "score", "path"], lineterminator="\n"
    )
    w.writeheader()
    for row in resolution_rows(records):
        w.writerow({**row, "score": repr(row["score"])})
    return buf.getvalue()


def plot_prune_quality(rows: Sequence[dict[str, Any]], out_stem: str | Path) -> list[Path]:
    """Benchmark score vs ``k`` visual tokens kept, one line per method (saliency, random), one panel per
    benchmark: the quality side of pruning (``probes vlm prune-quality``); writes PNG + PDF."""
    from .figure import new_figure, paper_style, save_figure

    if not rows:
        raise UserError("no prune-quality rows to plot")
    benchmarks = list(dict.fromkeys(str(r["benchmark"]) for r in rows))
    with paper_style():
        fig, axes = new_figure(len(benchmarks), min(3, len(benchmarks)))
        for ax, b in zip(axes, benchmarks, strict=True):
            sub = [r for r in rows if r["benchmark"] == b]
            for method in dict.fromkeys(str(r["method"]) for r in sub):
                pts = sorted((int(r["k"]), float(r["score"])) for r in sub if r["method"] == method)
                ax.plot([k for k, _ in pts], [s for _, s in pts], marker="o", label=method)
            n = sub[0]["n"]
            ax.set_title(f"{b} (n={n})")
            ax.set_xscale("log", base=2)
            ks = sorted({int(r["k"]) for r in sub})
            ax.set_xticks(ks)
            ax.set_xticklabels([str(k) for k in ks])
            ax.set_xlabel(f"visual tokens kept k (of {sub[0]['n_patches']})")
            ax.set_ylabel(str(sub[0]["metric"]))
            ax.legend(title=None, fontsize="x-small")
        return save_figure(fig, out_stem)
