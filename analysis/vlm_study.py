"""The report of ``probes vlm study``: every number with n, seeds and a 95 % bootstrap CI.

Reads only files the study wrote: ``study.json``, ``prior/<task>/predictions.jsonl`` and
``evals/<backbone>-<order>-s<seed>/<task>/{scores.json, predictions.jsonl}``.

Per-item values (reporting units): grounding ``100 · correct`` (lenient parser, the headline) and
``100 · correct_strict`` (strict parser, reported beside it), captioning the per-image CIDEr-D × 100 (the
corpus CIDEr-D is the mean of the per-image scores), VQA the per-question VQA score × 100. An *arm* is one
backbone × order; its point estimate is the mean over seeds of the per-seed benchmark score.

Confidence intervals: a two-level percentile bootstrap (``B`` = 2000 resamples, seeded, so reproducible).
Each resample draws the seeds of every arm with replacement and the test items with replacement; the same
item draw is shared by every arm and the prior, so differences are *paired* over items, while seeds are
drawn independently per arm. With two seeds the seed level is coarse (a resample holds one seed twice or
both): the CI then mixes item noise with a rough view of seed-to-seed spread. Group sums (Table 2 style)
add the benchmarks of a task group inside each resample; relative gains (Fig. 4 style) are
``100 · (aware − agnostic) / agnostic`` computed inside each resample.
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

N_BOOT = 2000
LEVEL = 0.95
GROUP_ORDER = ("grounding", "captioning", "vqa")
ORDER_LABEL = {"agnostic": "TAg", "aware": "TA", "query-first": "QF"}
STRICT = "strict"  # the strict-parser grounding row: f"{benchmark} (strict parser)"
OTHER = "hits another object"  # the grounding row of predictions that hit a non-referred object


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


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def fmt(self, digits: int = 1) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def fmt_signed(self, digits: int = 1) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.value) and (self.lo > 0 or self.hi < 0)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path} is missing: the study has not evaluated this arm yet")
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _other_object_hits(recs: list[dict[str, Any]]) -> dict[str, float]:
    """100 when the (lenient) predicted box hits, at IoU ≥ 0.5, another object of the same image and not the
    one referred to: a model that localises objects but ignores the expression scores here."""
    from probes.vlm.eval.metrics import parse_box

    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_image.setdefault(str(r["image"]), []).append(r)
    out = {}
    for r in recs:
        box = parse_box(str(r["prediction"]), strict=False)
        others = [o["references"][0] for o in by_image[str(r["image"])] if o["id"] != r["id"]]
        hit = box is not None and not r["correct"] and any(_iou(box, o) >= 0.5 for o in others)
        out[str(r["id"])] = 100.0 * float(hit)
    return out


def _item_values(task: str, recs: list[dict[str, Any]], kind: str = "") -> dict[str, float]:
    if task == "grounding":
        if kind == OTHER:
            return _other_object_hits(recs)
        key = "correct_strict" if kind == STRICT else "correct"
        return {str(r["id"]): 100.0 * float(bool(r[key])) for r in recs}
    return {str(r["id"]): float(r["score"]) for r in recs}


def _rows(task: str, benchmark: str) -> list[tuple[str, str]]:
    """(row name, kind) of one benchmark: grounding adds the strict parser and the other-object rate."""
    if task != "grounding":
        return [(benchmark, "")]
    return [(benchmark, ""), (f"{benchmark} ({STRICT} parser)", STRICT), (f"{benchmark} ({OTHER})", OTHER)]


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


# --------------------------------------------------------------------------------------------- bootstrap


class Bootstrap:
    """Shared resampling plan: item draws per benchmark, seed draws per arm (see module docstring)."""

    def __init__(self, data: StudyData, n_boot: int = N_BOOT, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_boot = n_boot
        self.items = {b.name: rng.integers(0, len(b.ids), size=(n_boot, len(b.ids))) for b in data.benches}
        head = {b.task: b.name for b in data.benches if is_headline(b.name)}
        for b in data.benches:  # diagnostic rows reuse their benchmark's item draw (paired with it)
            if not is_headline(b.name):
                self.items[b.name] = self.items[head[b.task]]
        n_seeds = {a.label: len(a.seeds) for a in data.arms}
        self.seeds = {label: rng.integers(0, n, size=(n_boot, n)) for label, n in n_seeds.items()}
        self.data = data

    def replicates(self, arm: str | None, bench: str) -> np.ndarray:
        """``[n_boot]`` resampled benchmark scores of ``arm`` (``None``: the prior)."""
        mat = self.data.prior[bench] if arm is None else self.data.values[(arm, bench)]
        items = self.items[bench]
        per_seed_item_means = mat[:, items].mean(axis=2)  # [seeds, n_boot]
        if arm is None:
            return per_seed_item_means[0]
        seeds = self.seeds[arm]  # [n_boot, n_seeds]
        return np.take_along_axis(per_seed_item_means.T, seeds, axis=1).mean(axis=1)


def _estimate(point: float, reps: np.ndarray) -> Estimate:
    reps = reps[np.isfinite(reps)]
    if math.isnan(point) or reps.size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    lo, hi = np.quantile(reps, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(float(point), float(lo), float(hi))


def _point(data: StudyData, arm: str | None, bench: str) -> float:
    mat = data.prior[bench] if arm is None else data.values[(arm, bench)]
    return float(mat.mean(axis=1).mean())


def _relative(aware: np.ndarray | float, agnostic: np.ndarray | float) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(agnostic) != 0, 100.0 * (np.asarray(aware) - agnostic) / agnostic, np.nan)


# --------------------------------------------------------------------------------------------- the report


@dataclass
class StudyReport:
    data: StudyData
    scores: dict[tuple[str | None, str], Estimate]  # (arm label or None = prior, bench) → estimate
    group_sums: dict[tuple[str | None, str], Estimate]
    differences: list[tuple[str, str, str, Estimate]]  # (variant, pythia label, mamba label) per group
    gains: list[tuple[str, str, Estimate, Estimate, Estimate]]  # (backbone, bench, agnostic, aware, gain %)
    grounding_check: dict[str, Any]


def build_study_report(data: StudyData, n_boot: int = N_BOOT) -> StudyReport:
    bs = Bootstrap(data, n_boot)
    arms: list[str | None] = [None, *(a.label for a in data.arms)]
    scores = {(a, b.name): _estimate(_point(data, a, b.name), bs.replicates(a, b.name)) for a in arms for b in data.benches}
    headline = [b for b in data.benches if is_headline(b.name)]
    groups = [g for g in GROUP_ORDER if any(b.group == g for b in headline)]
    group_sums: dict[tuple[str | None, str], Estimate] = {}
    for a in arms:
        for g in groups:
            names = [b.name for b in headline if b.group == g]
            point = sum(_point(data, a, n) for n in names)
            group_sums[(a, g)] = _estimate(point, sum(bs.replicates(a, n) for n in names))
    differences = []
    variants = list(dict.fromkeys(a.variant for a in data.arms))
    for v in variants:
        pythias = [a for a in data.arms if a.variant == v and is_transformer(a.family)]
        mambas = [a for a in data.arms if a.variant == v and has_ssm_layers(a.family)]
        for p in pythias:
            for m in mambas:
                for g in groups:
                    names = [b.name for b in headline if b.group == g]
                    point = sum(_point(data, p.label, n) - _point(data, m.label, n) for n in names)
                    reps = sum(bs.replicates(p.label, n) - bs.replicates(m.label, n) for n in names)
                    differences.append((g, p.label, m.label, _estimate(point, reps)))
    gains = []
    for backbone in dict.fromkeys(a.backbone for a in data.arms):
        by_v = {a.variant: a for a in data.arms if a.backbone == backbone}
        if "aware" not in by_v or "agnostic" not in by_v:
            continue
        aw, ag = by_v["aware"].label, by_v["agnostic"].label
        for b in headline:
            ra, rn = bs.replicates(aw, b.name), bs.replicates(ag, b.name)
            gain = _estimate(float(_relative(_point(data, aw, b.name), _point(data, ag, b.name))), _relative(ra, rn))
            gains.append((backbone, b.name, scores[(ag, b.name)], scores[(aw, b.name)], gain))
    ground = next((b for b in headline if b.group == "grounding"), None)
    check: dict[str, Any] = {}
    if ground is not None:
        best = max(data.arms, key=lambda a: scores[(a.label, ground.name)].value)
        acc, prior = scores[(best.label, ground.name)], scores[(None, ground.name)]
        ratio = acc.value / prior.value if prior.value > 0 else math.inf
        check = {"benchmark": ground.name, "n": len(ground.ids), "best_arm": best.label, "accuracy": acc.value,
                 "ci": [acc.lo, acc.hi], "prior": prior.value, "ratio": ratio,
                 "learned": acc.value >= 25.0 and ratio >= 5.0 and len(ground.ids) >= 200}  # fmt: skip
    return StudyReport(data, scores, group_sums, differences, gains, check)


# --------------------------------------------------------------------------------------------- rendering


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def score_rows(rep: StudyReport) -> tuple[list[str], list[list[str]]]:
    """Table 2 style: one row per benchmark and a Σ row per task group; cells ``mean [95 % CI]``."""
    labels = [a.label for a in rep.data.arms]
    header = ["group", "benchmark (n items)", "metric", "blind prior", *labels]
    rows = []
    for g in GROUP_ORDER:
        benches = [b for b in rep.data.benches if b.group == g]
        if not benches:
            continue
        for b in benches:
            rows.append([g, f"{b.name} (n={len(b.ids)})", b.metric, rep.scores[(None, b.name)].fmt(),
                         *(rep.scores[(lab, b.name)].fmt() for lab in labels)])  # fmt: skip
        if (None, g) in rep.group_sums:
            rows.append([g, f"Σ {g}", "", rep.group_sums[(None, g)].fmt(), *(rep.group_sums[(lab, g)].fmt() for lab in labels)])
    return header, rows


def report_markdown(rep: StudyReport) -> str:
    cfg = rep.data.record["config"]
    seeds = ", ".join(map(str, cfg["seeds"]))
    header, rows = score_rows(rep)
    parts = [
        "# Pythia-VL vs Mamba-VL on the synthetic world: scores with 95 % bootstrap CIs",
        "",
        f"Mean over seeds {{{seeds}}} ({len(cfg['seeds'])} per arm) on the world's `{cfg['split']}` split; "
        "`[lo, hi]` is the 95 % two-level bootstrap CI (items and seeds resampled, "
        f"{N_BOOT} resamples; see `analysis/vlm_study.py`). Accuracy in %, CIDEr-D × 100. TAg = task-agnostic "
        "(image first), TA = task-aware (instruction before the image), QF = query-first.",
        "",
        _md_table(header, rows),
    ]
    if rep.differences:
        parts += ["", "## Pythia − Mamba per task group (positive: the Transformer is ahead)", "",
                  _md_table(["group", "pythia", "mamba", "difference [95 % CI]"],
                            [[g, p, m, e.fmt_signed()] for g, p, m, e in rep.differences])]  # fmt: skip
    if rep.gains:
        parts += ["", "## Task-aware vs task-agnostic (relative gain %, Fig. 4 style)", "",
                  _md_table(["backbone", "benchmark", "agnostic", "aware", "gain % [95 % CI]"],
                            [[bb, b, ag.fmt(), aw.fmt(), g.fmt_signed()] for bb, b, ag, aw, g in rep.gains])]  # fmt: skip
    return "\n".join(parts) + "\n"


def report_csv(rep: StudyReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "task_group", "benchmark", "model", "other_model", "value", "ci_lo", "ci_hi", "n_items", "n_seeds"])
    n_items = {b.name: len(b.ids) for b in rep.data.benches}
    n_seeds = {a.label: len(a.seeds) for a in rep.data.arms}
    group_of = {b.name: b.group for b in rep.data.benches}
    for (arm, bench), e in rep.scores.items():
        w.writerow(["score", group_of[bench], bench, arm or "blind prior", "", repr(e.value), repr(e.lo), repr(e.hi),
                    n_items[bench], n_seeds.get(arm or "", 0)])  # fmt: skip
    for (arm, g), e in rep.group_sums.items():
        w.writerow(["group_sum", g, "", arm or "blind prior", "", repr(e.value), repr(e.lo), repr(e.hi), "",
                    n_seeds.get(arm or "", 0)])  # fmt: skip
    for g, p, m, e in rep.differences:
        w.writerow(["difference", g, "", p, m, repr(e.value), repr(e.lo), repr(e.hi), "", n_seeds[p]])
    for bb, b, _, _, e in rep.gains:
        w.writerow(["gain", group_of[b], b, bb, "", repr(e.value), repr(e.lo), repr(e.hi), n_items[b], ""])
    return buf.getvalue()


def plot_gains(rep: StudyReport, out_stem: Path) -> list[Path]:
    """Relative task-aware gain per benchmark and backbone with 95 % CI error bars and value labels."""
    rows = [(bb, b, g) for bb, b, _, _, g in rep.gains if not math.isnan(g.value)]
    if not rows:
        return []
    from .figure import new_figure, paper_style, save_figure

    benches = list(dict.fromkeys(b for _, b, _ in rows))
    backbones = list(dict.fromkeys(bb for bb, _, _ in rows))
    width = 0.8 / len(backbones)
    with paper_style():
        fig, (ax,) = new_figure(1, 1)
        fig.set_size_inches(max(4.5, 1.3 * len(benches) + 1.5), 3.4)
        for k, bb in enumerate(backbones):
            xs, ys, lo, hi = [], [], [], []
            for i, b in enumerate(benches):
                e = next((g for bbb, bn, g in rows if bbb == bb and bn == b), None)
                if e is None:
                    continue
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(e.value)
                lo.append(e.value - e.lo)
                hi.append(e.hi - e.value)
            bars = ax.bar(xs, ys, width=width * 0.95, label=bb, yerr=[lo, hi], capsize=2, error_kw={"linewidth": 0.7})
            ax.bar_label(bars, labels=[f"{y:+.1f}" for y in ys], fontsize="x-small", padding=2)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(benches)))
        ax.set_xticklabels(benches, rotation=20, ha="right", fontsize="x-small")
        ax.set_ylabel("task-aware gain (%), 95 % CI")
        ax.legend(title=None, fontsize="x-small")
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
        parts += ["", "## Scores (mean over seeds, 95 % bootstrap CI)", "", _md_table(header, rows), "",
                  "Blind prior: a text-only predictor fit on the training split, scored by the same scorer ("
                  + "; ".join(f"{k}: {v}" for k, v in rep.data.prior_rules.items() if is_headline(k))
                  + "). The strict-parser row scores the same predictions when the answer must be exactly one box; "
                  f"the '{OTHER}' row counts wrong answers that hit another object of the image at IoU ≥ 0.5 "
                  "(localising objects without reading the expression scores there).",
                  ]  # fmt: skip
        if c:
            verdict = "**learned**" if c["learned"] else "**not learned** by the issue's bar (≥ 25 % and ≥ 5× the prior, n ≥ 200)"
            parts += ["", f"Grounding: best arm {c['best_arm']} reaches {c['accuracy']:.1f} % "
                      f"[{c['ci'][0]:.1f}, {c['ci'][1]:.1f}] Acc@IoU≥0.5 on n={c['n']} held-out expressions, "
                      f"{c['ratio']:.1f}× the blind prior ({c['prior']:.1f} %): {verdict}."]  # fmt: skip
        parts += ["", "Pythia − Mamba differences and task-aware gains with CIs: [report.md](report.md), "
                  "[report.csv](report.csv), [gains.png](gains.png). Per-sample predictions: "
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


def write_study_report(out: str | Path, *, n_boot: int = N_BOOT) -> tuple[StudyReport | None, list[Path]]:
    """``report.md``, ``report.csv``, ``gains.png/pdf`` (finished studies) and ``README.md`` (always)."""
    out = Path(out)
    record = json.loads((out / "study.json").read_text())
    rep = None
    written: list[Path] = []
    if record["status"] == "finished":
        rep = build_study_report(load_study(out), n_boot)
        atomic_write_text(out / "report.md", report_markdown(rep))
        atomic_write_text(out / "report.csv", report_csv(rep))
        written += [out / "report.md", out / "report.csv", *plot_gains(rep, out / "gains")]
    atomic_write_text(out / "README.md", study_readme(record, rep))
    return rep, [*written, out / "README.md"]
