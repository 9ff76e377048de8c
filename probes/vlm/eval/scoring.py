"""Score decoded predictions of one benchmark: per-sample records and the benchmark summary.

Grounding: the headline Acc@IoU≥0.5 parses leniently (the first box in the answer, as the paper's released
code); the strict score (the answer must be exactly one box) is in ``details`` and per record, side by side.

Pure (no model): the runner calls it after decoding, tests call it with hand-written predictions. Summary
scores are in the benchmarks' usual reporting units — accuracy in percent, CIDEr × 100 — which is what
``scores.json`` stores and what the grounding-gap report sums. Details use the same units (counts excepted).

VQA: a question with several human answers (VQAv2's ten) gets the VQAv2 score; one with a single answer
(GQA and similar) gets exact match after the same normalisation (the leave-one-out formula would always
give 0 with one annotator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from probes.errors import UserError

from .datasets import EvalSample
from .metrics import (
    cider_d,
    exact_match,
    grounding_scores,
    multiple_choice_scores,
    pope_scores,
    vqa_accuracy,
)


@dataclass(frozen=True)
class Scored:
    metric: str
    score: float  # reporting units (percent / CIDEr × 100)
    details: dict[str, float | int]
    records: list[dict[str, Any]]  # one per sample: id, prediction, references, correct/score, …


def _records(samples: Sequence[EvalSample], predictions: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": s.id, "image": s.image, "prompt": s.prompt, "prediction": p} for s, p in zip(samples, predictions, strict=True)]


def score_predictions(task: str, samples: Sequence[EvalSample], predictions: Sequence[str]) -> Scored:
    if len(samples) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
    recs = _records(samples, predictions)
    if task == "grounding":
        refs = [s.reference for s in samples]
        g = grounding_scores(predictions, refs, strict=False)
        st = grounding_scores(predictions, refs, strict=True)
        for r, s, v, ok, v_st, ok_st in zip(recs, samples, g.ious, g.correct, st.ious, st.correct, strict=True):
            r.update(references=[s.reference], iou=v, correct=ok, iou_strict=v_st, correct_strict=ok_st)
        details = {"mean_iou": 100 * g.mean_iou, "n_unparseable": g.n_unparseable,
                   "acc_strict": 100 * st.accuracy, "mean_iou_strict": 100 * st.mean_iou,
                   "n_unparseable_strict": st.n_unparseable}  # fmt: skip
        return Scored("acc@iou>=0.5", 100 * g.accuracy, details, recs)
    if task == "captioning":
        corpus, per = cider_d({s.id: p for s, p in zip(samples, predictions, strict=True)}, {s.id: s.reference for s in samples})
        for r, s in zip(recs, samples, strict=True):
            r.update(references=s.reference, score=100 * per[s.id])
        return Scored("cider", 100 * corpus, {}, recs)
    if task == "vqa":
        multi = 0
        values = []
        for r, s, p in zip(recs, samples, predictions, strict=True):
            if not s.reference:
                raise UserError(f"question {s.id} has no reference answers (test-dev splits cannot be scored here)")
            if len(s.reference) > 1:
                multi += 1
                v = vqa_accuracy(p, s.reference)
            else:
                v = float(exact_match(p, s.reference[0]))
            values.append(v)
            r.update(references=s.reference, score=100 * v, correct=v > 0)
        metric = "vqa_score" if multi == len(samples) else ("accuracy" if multi == 0 else "vqa_score+accuracy")
        return Scored(metric, 100 * sum(values) / len(values), {"n_multi_answer": multi}, recs)
    if task == "mc":
        opts = [s.reference["options"] for s in samples]
        answers = [s.reference["answer"] for s in samples]
        m = multiple_choice_scores(predictions, opts, answers)
        for r, s, ok in zip(recs, samples, m.correct, strict=True):
            r.update(references=[s.reference["options"][s.reference["answer"]]], answer=s.reference["answer"], correct=ok)
        return Scored("accuracy", 100 * m.accuracy, {"n_unparseable": m.n_unparseable}, recs)
    if task == "pope":
        labels = [bool(s.reference) for s in samples]
        ps = pope_scores(predictions, labels)
        for r, lab, ok in zip(recs, labels, ps.correct, strict=True):
            r.update(references=["yes" if lab else "no"], correct=ok)
        details = {
            "precision": 100 * ps.precision,
            "recall": 100 * ps.recall,
            "f1": 100 * ps.f1,
            "yes_ratio": 100 * ps.yes_ratio,
            "n_unparseable": ps.n_unparseable,
        }
        return Scored("accuracy", 100 * ps.accuracy, details, recs)
    raise UserError(f"unknown task {task!r}")
