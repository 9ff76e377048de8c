"""Held-out evaluation throughput: logits at the target position only vs the full head at every position.

At the paper's vocabulary (~50K rows) the full head costs ``T · V · H`` multiply-adds per sample and a
``[N, T, V]`` logits tensor; the probe needs one position. The preset is grown to ``vocab`` base rows (plus
the task's new tokens) so the head cost is realistic; both variants evaluate the same held-out samples,
batch by batch, alternately, and must agree on the predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from probes.errors import UserError
from probes.train.forward import full_logits_at_targets, target_logits

from .probe import build_probe
from .timing import timed


def bench_eval(
    model: str = "pythia-tiny",
    vocab: int = 50304,
    length: int = 200,
    n: int = 2048,
    batch_size: int = 16,
    device: torch.device = torch.device("cpu"),
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    if min(n, batch_size, vocab) < 1 or length < 2:
        raise UserError("--n, --batch and --vocab must be >= 1 and --len >= 2")
    probe = build_probe(model, length, device, base_vocab=vocab)
    probe.model.eval()
    task = probe.task(length)
    dtype = probe.autocast_dtype
    variants = {"target-only": target_logits, "full logits": full_logits_at_targets}
    totals = dict.fromkeys(variants, 0.0)
    agree = 0
    with torch.inference_mode():
        batch0 = task.generate("heldout", torch.arange(min(batch_size, n), device=device))
        for fn in variants.values():  # warm-up
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                fn(probe.model, batch0.input_ids, batch0.label_positions)
        for lo in range(0, n, batch_size):
            batch = task.generate("heldout", torch.arange(lo, min(lo + batch_size, n), device=device))
            preds = {}
            for name, fn in variants.items():
                def run(fn=fn, name=name, batch=batch, preds=preds) -> None:
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        preds[name] = fn(probe.model, batch.input_ids, batch.label_positions).argmax(-1)
                totals[name] += timed(run, device)
            agree += int((preds["target-only"] == preds["full logits"]).sum())
            if on_batch is not None:
                on_batch(batch.input_ids.shape[0])
    rows = [
        {"variant": name, "seconds": s, "samples_per_s": n / s, "ratio_to_full": totals["full logits"] / s}
        for name, s in totals.items()
    ]
    return {
        "config": {"model": model, "vocab": vocab, "vocab_rows": int(probe.model.get_input_embeddings().weight.shape[0]),
                   "len": length, "n": n, "batch": batch_size},
        "rows": rows,
        "prediction_agreement": agree / n,
        "ratio": {"target_vs_full": totals["full logits"] / totals["target-only"]},
    }
