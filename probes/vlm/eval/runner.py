"""Evaluate a VLM checkpoint on one benchmark: batched greedy decoding, scoring, output directory.

Output directory (CONTRACTS "Evaluation output"):

- ``predictions.jsonl``: one object per sample (id, image, prompt, prediction, references, correct/score …);
- ``scores.json``: ``{"schema_version": 1, "benchmark", "task_group", "metric", "score", "n", "model":
  {"backbone", "family", "encoder", "connector", "task_aware", "order", "checkpoint"}, "resolution"}`` plus
  ``"task"``, ``"details"`` (e.g. POPE precision/recall/F1) and ``"max_new_tokens"``.

Both files are written only after every sample is decoded and scored, each atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from probes.errors import UserError
from probes.io import atomic_path, atomic_write_json, ensure_writable_dir

from ..sequence import as_order
from .datasets import DEFAULT_MAX_NEW_TOKENS, EvalSample, EvalSet
from .scoring import score_predictions


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a training run directory holding one in ``final/``."""
    p = Path(path)
    if (p / "vlm_config.json").is_file():
        return p
    if (p / "final" / "vlm_config.json").is_file():
        return p / "final"
    if not p.exists():
        raise UserError(f"checkpoint {p} does not exist")
    raise UserError(f"{p} is not a VLM checkpoint (no vlm_config.json here or in {p / 'final'})")


def load_for_eval(checkpoint: str | Path, *, resolution: int | None = None, device: str | None = None) -> Any:
    """``load_vlm`` + device placement + eval mode."""
    from probes.vlm.model import load_vlm

    vlm = load_vlm(resolve_checkpoint(checkpoint), resolution=resolution)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return vlm.to(dev).eval()


def decode_samples(
    vlm: Any,
    samples: Sequence[EvalSample],
    *,
    batch_size: int,
    max_new_tokens: int,
    task_aware: bool | str,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers for ``samples``, ``batch_size`` images at a time through ``VLM.generate``."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    out: list[str] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pixels = vlm.pixel_values([s.image for s in chunk])
        out += vlm.generate(
            pixels,
            [s.prompt for s in chunk],
            task_aware=task_aware,
            max_new_tokens=max_new_tokens,
            instructions=[s.instruction for s in chunk],
        )
        if on_batch is not None:
            on_batch(len(chunk))
    return out


def evaluate(
    vlm: Any,
    eval_set: EvalSet,
    out: str | Path,
    *,
    checkpoint: str | Path,
    batch_size: int = 16,
    task_aware: bool | str | None = None,
    max_new_tokens: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode, score and write ``out/predictions.jsonl`` + ``out/scores.json``; returns the scores object.

    ``tags`` (e.g. the study's seed and arm) are stored as ``scores.json["tags"]``."""
    out = Path(out)
    ensure_writable_dir(out)
    ta = as_order(vlm.config.task_aware if task_aware is None else task_aware)
    max_new = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[eval_set.task]
    predictions = decode_samples(
        vlm, eval_set.samples, batch_size=batch_size, max_new_tokens=max_new, task_aware=ta, on_batch=on_batch
    )
    scored = score_predictions(eval_set.task, eval_set.samples, predictions)
    cfg = vlm.config
    scores = {
        "schema_version": 1,
        "benchmark": eval_set.benchmark,
        "task": eval_set.task,
        "task_group": eval_set.task_group,
        "metric": scored.metric,
        "score": scored.score,
        "n": len(eval_set.samples),
        "details": scored.details,
        "model": {
            "backbone": cfg.backbone,
            "family": cfg.family,
            "encoder": cfg.encoder,
            "connector": cfg.connector,
            "task_aware": ta != "agnostic",
            "order": ta,
            "checkpoint": str(checkpoint),
        },
        "resolution": int(vlm.encoder.resolution),
        "max_new_tokens": max_new,
    }
    if tags:
        scores["tags"] = dict(tags)
    with atomic_path(out / "predictions.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in scored.records))
    atomic_write_json(out / "scores.json", scores)
    return scores
