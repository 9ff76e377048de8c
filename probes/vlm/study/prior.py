"""The blind prior: a text-only predictor fit on the world's training split, scored like the models.

Grounding predicts one fixed box, the one that hits the most training expressions (of the mean training
box and every training box: with large objects it beats the mean box, the earlier rule), VQA the most frequent training answer to the same question (else
the most frequent answer overall), captioning the most frequent training caption. A model at or below it
has not used the image. Its per-sample predictions are written like an evaluation (``predictions.jsonl``)
so the report can put a bootstrap CI on it and compare models against it item by item.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from probes.io import atomic_path, atomic_write_json, ensure_writable_dir

from ..eval.datasets import load_eval_set
from ..eval.scoring import score_predictions
from ..image import format_box


def best_fixed_box(train_boxes: list[list[float]], decimals: int) -> tuple[list[float], float]:
    """The one box (the mean training box or any training box, written with ``decimals``) that scores the
    most Acc@IoU≥0.5 hits on the training expressions: the strongest answer that ignores image and text."""
    import numpy as np

    ref = np.asarray(train_boxes, dtype=float)
    cands = np.round(np.vstack([ref.mean(axis=0, keepdims=True), ref]), decimals)
    cands = np.unique(cands, axis=0)

    def hits(c: np.ndarray) -> np.ndarray:  # [C] number of training boxes each candidate hits
        ix = np.clip(np.minimum(c[:, None, 2], ref[None, :, 2]) - np.maximum(c[:, None, 0], ref[None, :, 0]), 0, None)
        iy = np.clip(np.minimum(c[:, None, 3], ref[None, :, 3]) - np.maximum(c[:, None, 1], ref[None, :, 1]), 0, None)
        inter = ix * iy
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        union = area(c)[:, None] + area(ref)[None, :] - inter
        return ((inter / np.where(union > 0, union, np.inf)) >= 0.5).sum(axis=1)

    counts = np.concatenate([hits(cands[i : i + 256]) for i in range(0, len(cands), 256)])
    best = int(np.argmax(counts))  # ties: the first in sorted order
    return [float(v) for v in cands[best]], 100.0 * float(counts[best]) / len(ref)


def blind_prior(world: Path, task: str, split: str, out: Path | None = None, *, box_decimals: int = 2) -> dict[str, Any]:
    """Score the prior on ``split``; with ``out``, write ``predictions.jsonl`` and ``prior.json`` there."""
    train = load_eval_set(task, world, split="train").samples
    test = load_eval_set(task, world, split=split)
    if task == "grounding":
        box, hits = best_fixed_box([s.reference for s in train], box_decimals)
        preds = [format_box(box, box_decimals)] * len(test.samples)
        rule = f"the fixed box with the most training hits {preds[0]} ({hits:.1f} % of training expressions)"
    elif task == "vqa":
        overall = Counter(Counter(s.reference).most_common(1)[0][0] for s in train)
        by_question: dict[str, Counter[str]] = {}
        for s in train:
            by_question.setdefault(s.prompt, Counter()).update([Counter(s.reference).most_common(1)[0][0]])
        top = overall.most_common(1)[0][0]
        preds = [by_question[s.prompt].most_common(1)[0][0] if s.prompt in by_question else top for s in test.samples]
        rule = f"most frequent training answer to the same question (else {top!r})"
    else:
        caption = Counter(s.reference[0] for s in train).most_common(1)[0][0]
        preds = [caption] * len(test.samples)
        rule = f"most frequent training caption {caption!r}"
    scored = score_predictions(task, test.samples, preds)
    details = dict(scored.details)
    if task == "grounding":  # the earlier, weaker rule, for comparison
        mean = [sum(s.reference[i] for s in train) / len(train) for i in range(4)]
        details["mean_box_acc"] = score_predictions(task, test.samples, [format_box(mean, box_decimals)] * len(test.samples)).score
    info = {"benchmark": test.benchmark, "task": task, "task_group": test.task_group, "metric": scored.metric,
            "score": scored.score, "n": len(test.samples), "rule": rule, "details": details}
    if out is not None:
        ensure_writable_dir(out)
        with atomic_path(out / "predictions.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in scored.records))
        atomic_write_json(out / "prior.json", info)
    return info
