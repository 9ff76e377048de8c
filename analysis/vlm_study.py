"""The report of ``probes vlm study``: every number with its seed count and a seed-level interval.

Reads only files the study wrote: ``study.json``, ``prior/<task>/predictions.jsonl`` and
``evals/<backbone>-<order>-s<seed>/<task>/{scores.json, predictions.jsonl}``.

Per-item values (reporting units): grounding ``100 · correct`` (lenient parser, the headline) and
``100 · correct_strict`` (strict parser, reported beside it), captioning the per-image CIDEr-D × 100 (the
corpus CIDEr-D is the mean of the per-image scores), VQA the per-question VQA score × 100. An *arm* is one
backbone × order; a seed's score is the mean of its per-item values, the arm's the mean over seeds.

Grounding diagnostics (Acc@IoU≥0.5 alone mixes finding an object with reading the expression): *hits
another object* (wrong answers that hit another object of the image), *hits any object* (localisation:
correct or another object), and the *referring* score: on images with two or more objects, of the answers
that hit some object, the share that hit the one referred to (50 % is a model that localises but ignores
the expression, whatever its localisation rate).

Intervals (:mod:`probes.analysis.intervals`): the unit of replication is the training seed, so every
interval is a Student-t interval over the per-seed scores (items are fixed, the same test set for every
arm). Differences are *paired* per seed: two orders of one backbone share the seed's stage 1, data order
and the study's one frozen encoder; Pythia and Mamba share the seed's data order and the encoder. A paired
difference is the t-interval of the per-seed differences ``a_s − b_s``; relative gains (Fig. 4 style) are the
per-seed ``100 · (a_s − b_s) / b_s`` with their t-interval. The interval prints its coverage and ``n``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.errors import UserError
from probes.families import has_ssm_layers, is_transformer
from probes.io import atomic_write_text

from .intervals import Interval, mean_interval, paired_difference

LEVEL = 0.95
GROUP_ORDER = ("grounding", "captioning", "vqa")
ORDER_LABEL = {"agnostic": "TAg", "aware": "TA", "matched": "TAg-d", "query-first": "QF"}
STRICT = "strict"  # the strict-parser grounding row: f"{benchmark} (strict parser)"
OTHER = "hits another object"  # wrong answers that hit a non-referred object of the image
ANY = "hits any object"  # localisation: the answer hits some object of the image (right or not)
REFERRING = "referring, 2+ objects"  # of the answers hitting an object, the share on the referred one
# Order contrasts (a, b): a − b per seed. aware − agnostic is the paper's Fig. 4; matched separates it into
# the shorter image-to-answer distance (matched − agnostic) and knowing the task (aware − matched).
CONTRASTS = (("aware", "agnostic"), ("matched", "agnostic"), ("aware", "matched"))
CONTRAST_MEANING = {("aware", "agnostic"): "task-aware gain (Fig. 4)", ("matched", "agnostic"): "distance only",
                    ("aware", "matched"): "task only (distance matched)"}  # fmt: skip


@dataclass(frozen=True)
class Bench:
    task: str
    group: str
    name: str  # benchmark name, or a grounding diagnostic row (see _rows)
    metric: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Arm:
    backbone: str
    family: str
    variant: str
    seeds: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.backbone} ({ORDER_LABEL.get(self.variant, self.variant)})"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path} is missing: the study has not evaluated this arm yet")
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _grounding_outcomes(recs: list[dict[str, Any]]) -> dict[str, tuple[bool, bool, int]]:
    """Per expression: (correct, hits another object of the image at IoU ≥ 0.5 while wrong, objects in the
    image). Every object of a world image has one expression, so the expressions of an image count its objects."""
    from probes.vlm.eval.metrics import parse_box

    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_image.setdefault(str(r["image"]), []).append(r)
    out = {}
    for r in recs:
        box = parse_box(str(r["prediction"]), strict=False)
        others = [o["references"][0] for o in by_image[str(r["image"])] if o["id"] != r["id"]]
        other = box is not None and not r["correct"] and any(_iou(box, o) >= 0.5 for o in others)
        out[str(r["id"])] = (bool(r["correct"]), other, len(by_image[str(r["image"])]))
    return out


def _item_values(task: str, recs: list[dict[str, Any]], kind: str = "") -> dict[str, float]:
    """Per-item values of one row; NaN marks an item outside the row's denominator (the referring score
    counts only answers that hit an object, on images with two or more)."""
    if task != "grounding":
        return {str(r["id"]): float(r["score"]) for r in recs}
    if kind in ("", STRICT):
        key = "correct_strict" if kind == STRICT else "correct"
        return {str(r["id"]): 100.0 * float(bool(r[key])) for r in recs}
    out = {}
    for i, (correct, other, n_obj) in _grounding_outcomes(recs).items():
        if kind == OTHER:
            out[i] = 100.0 * other
        elif kind == ANY:
            out[i] = 100.0 * (correct or other)
        else:
            out[i] = 100.0 * correct if (correct or other) and n_obj >= 2 else math.nan
    return out


def _rows(task: str, benchmark: str) -> list[tuple[str, str]]:
    """(row name, kind) of one benchmark: grounding adds the strict parser and the diagnostics."""
    if task != "grounding":
        return [(benchmark, "")]
    return [(benchmark, ""), (f"{benchmark} ({STRICT} parser)", STRICT), (f"{benchmark} ({ANY})", ANY),
            (f"{benchmark} ({OTHER})", OTHER), (f"{benchmark} ({REFERRING})", REFERRING)]  # fmt: skip


def is_headline(name: str) -> bool:
    return not name.endswith(")")


@dataclass
class StudyData:
    """Per-item matrices: ``values[(arm label, bench name)]`` is ``[seeds, items]``; prior ``[1, items]``."""

    record: dict[str, Any]
    benches: list[Bench]
    arms: list[Arm]
    values: dict[tuple[str, str], np.ndarray]
    prior: dict[str, np.ndarray]
    prior_rules: dict[str, str]

    def seed_scores(self, arm: str, bench: str) -> np.ndarray:
        """``[seeds]`` score of each seed (mean over the row's items; NaN when a seed has none)."""
        return _row_means(self.values[(arm, bench)])

    def prior_score(self, bench: str) -> float:
        return float(_row_means(self.prior[bench])[0])


def _row_means(mat: np.ndarray) -> np.ndarray:
    counts = np.isfinite(mat).sum(axis=1)
    sums = np.where(np.isfinite(mat), mat, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def load_study(out: str | Path) -> StudyData:
    out = Path(out)
    path = out / "study.json"
    if not path.is_file():
        raise UserError(f"{out} has no study.json (not a `probes vlm study` directory)")
    record = json.loads(path.read_text())
    cfg = record["config"]
    benches: list[Bench] = []
    prior: dict[str, np.ndarray] = {}
    rules: dict[str, str] = {}
    for task in cfg["tasks"]:
        info = json.loads((out / "prior" / task / "prior.json").read_text())
        recs = _read_jsonl(out / "prior" / task / "predictions.jsonl")
        ids = tuple(str(r["id"]) for r in recs)
        for name, kind in _rows(task, info["benchmark"]):
            benches.append(Bench(task, info["task_group"], name, info["metric"], ids))
            vals = _item_values(task, recs, kind)
            prior[name] = np.array([[vals[i] for i in ids]])
            rules[name] = info["rule"]
    arms: list[Arm] = []
    values: dict[tuple[str, str], np.ndarray] = {}
    for backbone in cfg["backbones"]:
        for variant in cfg["variants"]:
            family = ""
            per_bench: dict[str, list[list[float]]] = {b.name: [] for b in benches}
            for seed in cfg["seeds"]:
                arm_dir = out / "evals" / f"{_slug(backbone)}-{variant}-s{seed}"
                for b in benches:
                    if not is_headline(b.name):
                        continue
                    scores = json.loads((arm_dir / b.task / "scores.json").read_text())
                    family = scores["model"]["family"]
                    recs = _read_jsonl(arm_dir / b.task / "predictions.jsonl")
                    for name, kind in _rows(b.task, b.name):
                        vals = _item_values(b.task, recs, kind)
                        if set(vals) != set(b.ids):
                            raise UserError(f"{arm_dir / b.task} scored other items than the prior")
                        per_bench[name].append([vals[i] for i in b.ids])
            arm = Arm(backbone, family, variant, tuple(cfg["seeds"]))
            arms.append(arm)
            for name, rows in per_bench.items():
                values[(arm.label, name)] = np.array(rows)
    return StudyData(record, benches, arms, values, prior, rules)


def _slug(name: str) -> str:
    return Path(name).name if Path(name).is_dir() else name.replace("/", "--")


# --------------------------------------------------------------------------------------------- intervals


def _finite(values: np.ndarray) -> list[float]:
    return [float(v) for v in values if math.isfinite(float(v))]


def _mean(values: np.ndarray) -> Interval:
    vals = _finite(values)
    return mean_interval(vals, LEVEL) if vals else Interval(math.nan, None, None, None, 0, "Student t")


def _paired(a: np.ndarray, b: np.ndarray) -> Interval:
    keep = np.isfinite(a) & np.isfinite(b)
    if not keep.any():
        return Interval(math.nan, None, None, None, 0, "paired Student t")
    return paired_difference(a[keep].tolist(), b[keep].tolist(), LEVEL)


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, 100.0 * (a - b) / b, np.nan)


def fmt(e: Interval, digits: int = 1, signed: bool = False) -> str:
    """``41.9 [35.2, 48.4] (95 %, n=4)``; NaN estimates print ``n/a``."""
    if math.isnan(e.estimate):
        return "n/a"
    spec = f"{{:{'+' if signed else ''}.{digits}f}}"
    return e.format(spec)


def excludes_zero(e: Interval) -> bool:
    return e.low is not None and e.high is not None and (e.low > 0 or e.high < 0)


# --------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Contrast:
    """One paired comparison: ``a − b`` per seed, in points and in % of ``b``."""

    group: str
    bench: str
    a: str
    b: str
    meaning: str
    points: Interval
    relative: Interval


@dataclass
class StudyReport:
    data: StudyData
    scores: dict[tuple[str | None, str], Interval]  # (arm label or None = prior, bench) → interval over seeds
    group_sums: dict[tuple[str | None, str], Interval]
    differences: list[Contrast]  # Pythia − Mamba per order and task group (+ the referring row)
    gains: list[Contrast]  # order contrasts per backbone and benchmark (CONTRASTS)
    grounding_check: dict[str, Any]


def _prior_interval(value: float) -> Interval:
    return Interval(value, None, None, None, 1, "deterministic")


def build_study_report(data: StudyData) -> StudyReport:
    labels = [a.label for a in data.arms]
    scores: dict[tuple[str | None, str], Interval] = {}
    for b in data.benches:
        scores[(None, b.name)] = _prior_interval(data.prior_score(b.name))
        for lab in labels:
            scores[(lab, b.name)] = _mean(data.seed_scores(lab, b.name))
    headline = [b for b in data.benches if is_headline(b.name)]
    groups = [g for g in GROUP_ORDER if any(b.group == g for b in headline)]
    names_of = {g: [b.name for b in headline if b.group == g] for g in groups}

    def group_seeds(label: str, g: str) -> np.ndarray:
        return sum(data.seed_scores(label, n) for n in names_of[g])

    group_sums: dict[tuple[str | None, str], Interval] = {}
    for g in groups:
        group_sums[(None, g)] = _prior_interval(sum(data.prior_score(n) for n in names_of[g]))
        for lab in labels:
            group_sums[(lab, g)] = _mean(group_seeds(lab, g))
    ref_row = next((b.name for b in data.benches if b.name.endswith(f"({REFERRING})")), None)
    differences = []
    for v in dict.fromkeys(a.variant for a in data.arms):
        pythias = [a for a in data.arms if a.variant == v and is_transformer(a.family)]
        mambas = [a for a in data.arms if a.variant == v and has_ssm_layers(a.family)]
        for p in pythias:
            for m in mambas:
                rows = [(g, f"Σ {g}", group_seeds(p.label, g), group_seeds(m.label, g)) for g in groups]
                if ref_row is not None:
                    rows.append(("grounding", ref_row, data.seed_scores(p.label, ref_row), data.seed_scores(m.label, ref_row)))
                for g, name, a, b in rows:
                    differences.append(Contrast(g, name, p.label, m.label, "Pythia − Mamba", _paired(a, b), _mean(_relative(a, b))))
    gains = []
    for backbone in dict.fromkeys(a.backbone for a in data.arms):
        by_v = {a.variant: a for a in data.arms if a.backbone == backbone}
        for va, vb in CONTRASTS:
            if va not in by_v or vb not in by_v:
                continue
            la, lb = by_v[va].label, by_v[vb].label
            for b in [*headline, *([next(x for x in data.benches if x.name == ref_row)] if ref_row else [])]:
                a_s, b_s = data.seed_scores(la, b.name), data.seed_scores(lb, b.name)
                gains.append(Contrast(b.group, b.name, la, lb, CONTRAST_MEANING[(va, vb)], _paired(a_s, b_s),
                                      _mean(_relative(a_s, b_s))))  # fmt: skip
    ground = next((b for b in headline if b.group == "grounding"), None)
    check: dict[str, Any] = {}
    if ground is not None:
        best = max(data.arms, key=lambda a: scores[(a.label, ground.name)].estimate)
        acc, prior = scores[(best.label, ground.name)], scores[(None, ground.name)].estimate
        ratio = acc.estimate / prior if prior > 0 else math.inf
        check = {"benchmark": ground.name, "n": len(ground.ids), "best_arm": best.label, "accuracy": acc.estimate,
                 "interval": fmt(acc), "prior": prior, "ratio": ratio,
                 "learned": acc.estimate >= 25.0 and ratio >= 5.0 and len(ground.ids) >= 200}  # fmt: skip
    return StudyReport(data, scores, group_sums, differences, gains, check)


# --------------------------------------------------------------------------------------------- rendering


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def score_rows(rep: StudyReport) -> tuple[list[str], list[list[str]]]:
    """Table 2 style: one row per benchmark and a Σ row per task group; cells ``mean [95 % t-interval]``."""
    labels = [a.label for a in rep.data.arms]
    header = ["group", "benchmark (n items)", "metric", "blind prior", *labels]
    rows = []
    for g in GROUP_ORDER:
        benches = [b for b in rep.data.benches if b.group == g]
        if not benches:
            continue
        for b in benches:
            prior = rep.scores[(None, b.name)].estimate
            rows.append([g, f"{b.name} (n={len(b.ids)})", b.metric, "n/a" if math.isnan(prior) else f"{prior:.1f}",
                         *(fmt(rep.scores[(lab, b.name)]) for lab in labels)])  # fmt: skip
        if (None, g) in rep.group_sums:
            rows.append([g, f"Σ {g}", "", f"{rep.group_sums[(None, g)].estimate:.1f}",
                         *(fmt(rep.group_sums[(lab, g)]) for lab in labels)])  # fmt: skip
    return header, rows


def _contrast_rows(cs: Sequence[Contrast]) -> list[list[str]]:
    return [[c.group, c.bench, c.a, c.b, c.meaning, fmt(c.points, signed=True), fmt(c.relative, signed=True),
             "yes" if excludes_zero(c.points) else "no"] for c in cs]  # fmt: skip


CONTRAST_HEADER = ["group", "row", "a", "b", "contrast", "a − b, points", "a − b, % of b", "interval excludes 0"]


def report_markdown(rep: StudyReport) -> str:
    cfg = rep.data.record["config"]
    seeds = ", ".join(map(str, cfg["seeds"]))
    header, rows = score_rows(rep)
    parts = [
        "# Pythia-VL vs Mamba-VL on the synthetic world: scores with seed-level 95 % t-intervals",
        "",
        f"Mean over seeds {{{seeds}}} ({len(cfg['seeds'])} per arm) on the world's `{cfg['split']}` split; "
        "`[lo, hi] (95 %, n)` is the Student-t interval over the per-seed scores (`analysis/intervals.py`; "
        "differences are paired per seed, see `analysis/vlm_study.py`). Accuracy in %, CIDEr-D × 100. "
        "TAg = task-agnostic (image first), TA = task-aware (instruction before the image), TAg-d = "
        "distance-matched task-agnostic (filler where TA has the instruction), QF = query-first.",
        "",
        _md_table(header, rows),
    ]
    if rep.differences:
        parts += ["", "## Pythia − Mamba, paired per seed (positive: the Transformer is ahead)", "",
                  _md_table(CONTRAST_HEADER, _contrast_rows(rep.differences))]  # fmt: skip
    if rep.gains:
        parts += ["", "## Order contrasts per backbone, paired per seed (Fig. 4 style relative gains)", "",
                  _md_table(CONTRAST_HEADER, _contrast_rows(rep.gains))]  # fmt: skip
    return "\n".join(parts) + "\n"


def _bounds(e: Interval) -> tuple[str, str]:
    return ("", "") if e.low is None or e.high is None else (repr(e.low), repr(e.high))


def report_csv(rep: StudyReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "task_group", "benchmark", "model", "other_model", "value", "ci_lo", "ci_hi", "coverage",
                "n_items", "n_seeds", "contrast"])  # fmt: skip
    n_items = {b.name: len(b.ids) for b in rep.data.benches}
    group_of = {b.name: b.group for b in rep.data.benches}
    for (arm, bench), e in rep.scores.items():
        w.writerow(["score", group_of[bench], bench, arm or "blind prior", "", repr(e.estimate), *_bounds(e),
                    e.coverage or "", n_items[bench], e.n if arm else 0, ""])  # fmt: skip
    for (arm, g), e in rep.group_sums.items():
        w.writerow(["group_sum", g, "", arm or "blind prior", "", repr(e.estimate), *_bounds(e), e.coverage or "", "",
                    e.n if arm else 0, ""])  # fmt: skip
    for kind, cs in (("difference", rep.differences), ("gain", rep.gains)):
        for c in cs:
            for unit, e in (("points", c.points), ("relative %", c.relative)):
                w.writerow([kind if unit == "points" else f"{kind}_relative", c.group, c.bench, c.a, c.b, repr(e.estimate),
                            *_bounds(e), e.coverage or "", n_items.get(c.bench, ""), e.n, c.meaning])  # fmt: skip
    return buf.getvalue()


def plot_gains(rep: StudyReport, out_stem: Path) -> list[Path]:
    """Relative gain of each order contrast per benchmark and backbone, with the paired t-interval as error bars."""
    rows = [c for c in rep.gains if not math.isnan(c.relative.estimate) and is_headline(c.bench)]
    if not rows:
        return []
    from .figure import new_figure, paper_style, save_figure

    benches = list(dict.fromkeys(c.bench for c in rows))
    series = list(dict.fromkeys((c.a.split(" (")[0], c.meaning) for c in rows))
    width = 0.8 / len(series)
    with paper_style():
        fig, (ax,) = new_figure(1, 1)
        fig.set_size_inches(max(5.5, 1.8 * len(benches) + 2.5), 3.6)
        for k, (bb, meaning) in enumerate(series):
            xs, ys, lo, hi = [], [], [], []
            for i, b in enumerate(benches):
                c = next((c for c in rows if c.bench == b and c.a.startswith(bb + " (") and c.meaning == meaning), None)
                if c is None:
                    continue
                e = c.relative
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(e.estimate)
                lo.append(e.estimate - e.low if e.low is not None else 0.0)
                hi.append(e.high - e.estimate if e.high is not None else 0.0)
            bars = ax.bar(xs, ys, width=width * 0.95, label=f"{bb}: {meaning}", yerr=[lo, hi], capsize=2,
                          error_kw={"linewidth": 0.7})  # fmt: skip
            ax.bar_label(bars, labels=[f"{y:+.0f}" for y in ys], fontsize="xx-small", padding=2)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(benches)))
        ax.set_xticklabels(benches, rotation=15, ha="right", fontsize="x-small")
        ax.set_ylabel("relative gain (%), 95 % t-interval")
        ax.legend(title=None, fontsize="xx-small", ncol=2)
        return save_figure(fig, out_stem)


def _stage_details(s: dict[str, Any]) -> str:
    info = s.get("info") or {}
    if s["kind"] == "train" and info:
        return f"{info['steps']} steps; loss {info['first_loss']:.3f} at step {info['first_step']} → {info['final_loss']:.3f}"
    if s["kind"] == "eval" and info:
        return f"{info['benchmark']}: {info['metric']} {info['score']:.2f} (n={info['n']})"
    if s["kind"] == "world" and info:
        return f"{info['n_images']} images, {info.get('spec')}"
    return s.get("status", "")


def study_readme(record: dict[str, Any], rep: StudyReport | None) -> str:
    """``README.md`` of the study directory: command, environment, headline numbers with CIs, stages."""
    cfg, env, stages = record["config"], record["env"], record["stages"]
    parts = [
        "# Pythia-VL vs Mamba-VL: small study on the synthetic world",
        "",
        "Written by `probes vlm study` (library: `probes/vlm/study/`, report: `analysis/vlm_study.py`). Reproduce with:",
        "",
        "```bash",
        record["command"],
        "```",
        "",
        f"Status: **{record['status']}**. Elapsed wall time {record.get('elapsed_s', 0.0):.0f} s "
        f"({record['config'].get('workers', 1)} worker processes; sum of stage wall times {record['total_wall_s']:.0f} s) on "
        f"{env.get('device_name') if str(env['device']).startswith('cuda') else env['device']} ({env['cpu_count']} CPUs, {env['threads']} torch threads), torch {env['torch']}, "
        f"transformers {env['transformers']}, python {env['python']}, mamba path {env.get('mamba_path')}.",
        "",
        "## Config",
        "",
        _md_table(["option", "value"], [[k, f"`{v}`"] for k, v in cfg.items()]),
    ]
    if rep is not None:
        header, rows = score_rows(rep)
        c = rep.grounding_check
        parts += ["", "## Scores (mean over seeds, 95 % t-interval over seeds)", "", _md_table(header, rows), "",
                  "Blind prior: a text-only predictor fit on the training split, scored by the same scorer ("
                  + "; ".join(f"{k}: {v}" for k, v in rep.data.prior_rules.items() if is_headline(k))
                  + "). The strict-parser row scores the same predictions when the answer must be exactly one box; "
                  f"'{ANY}' is localisation (the answer hits some object of the image at IoU ≥ 0.5), "
                  f"'{OTHER}' the wrong answers that hit another object, and '{REFERRING}' the share of the answers "
                  "hitting an object that hit the referred one, on images with two or more objects (50 % = reads "
                  "no expression).",
                  ]  # fmt: skip
        if c:
            verdict = "**learned**" if c["learned"] else "**not learned** by the bar (≥ 25 % and ≥ 5× the prior, n ≥ 200)"
            parts += ["", f"Grounding: best arm {c['best_arm']} reaches {c['interval']} Acc@IoU≥0.5 on n={c['n']} "
                      f"held-out expressions, {c['ratio']:.1f}× the blind prior ({c['prior']:.1f} %): {verdict}."]  # fmt: skip
        parts += ["", "Pythia − Mamba and order contrasts (task-aware, distance-matched), paired per seed: "
                  "[report.md](report.md), [report.csv](report.csv), [gains.png](gains.png). Per-sample predictions: "
                  "`evals/<backbone>-<order>-s<seed>/<task>/predictions.jsonl`, the prior's in `prior/<task>/`."]  # fmt: skip
    parts += [
        "",
        "## Stages",
        "",
        _md_table(["stage", "wall s", "details"],
                  [[s["name"], f"{s['wall_s']:.1f}" if s.get("wall_s") is not None else "–", _stage_details(s)] for s in stages]),
        "",
        "Wall times are per stage on a shared machine; several invocations (`--resume`) add up to the total.",
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


def write_study_report(out: str | Path) -> tuple[StudyReport | None, list[Path]]:
    """``report.md``, ``report.csv``, ``gains.png/pdf`` (finished studies) and ``README.md`` (always)."""
    out = Path(out)
    record = json.loads((out / "study.json").read_text())
    rep = None
    written: list[Path] = []
    if record["status"] == "finished":
        rep = build_study_report(load_study(out))
        atomic_write_text(out / "report.md", report_markdown(rep))
        atomic_write_text(out / "report.csv", report_csv(rep))
        written += [out / "report.md", out / "report.csv", *plot_gains(rep, out / "gains")]
    atomic_write_text(out / "README.md", study_readme(record, rep))
    return rep, [*written, out / "README.md"]
