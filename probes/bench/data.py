"""Generator throughput: the vectorised grounding generator against a per-sample Python loop.

The baseline is what one would write first: per sample, ``random.sample`` of the token pool, the query
picked from the context, the row appended to a list, the list turned into a tensor per chunk. It is timed on
fewer samples (it is slow) and its rate extrapolated to ``n``; it performs no train/held-out disjointness
check, which the vectorised generator gets by construction, so the comparison favours the baseline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import torch

from probes.synthetic.bank import window_bank
from probes.synthetic.grounding import GroundingConfig, GroundingTask


def python_generate(config: GroundingConfig, indices: range, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward per-sample generator of the same task (suffix layout): ``(input_ids, labels)``."""
    pool = list(range(config.context_offset, config.context_offset + config.pool_size))
    rows: list[list[int]] = []
    labels: list[int] = []
    for i in indices:
        context = rng.sample(pool, config.length)
        k = i % config.length
        rows.append(context + [config.out_token_id, context[k]])
        labels.append(config.pos_offset + k)
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(labels, dtype=torch.int64)


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]


def bench_data(
    length: int = 200,
    n: int = 1_000_000,
    chunk: int = 16384,
    python_n: int = 20000,
    seed: int = 0,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Samples/s of the vectorised generator (cold: bank built inside the timing; warm: bank cached) and of
    the Python baseline (timed on ``python_n`` samples, extrapolated), with their ratios."""
    config = GroundingConfig(length=length, seed=seed)
    spans = _chunks(n, chunk)

    def generate_all(task: GroundingTask) -> float:
        start = time.perf_counter()
        for lo, hi in spans:
            batch = task.generate("train", torch.arange(lo, hi))
            del batch
            if on_chunk is not None:
                on_chunk(hi - lo)
        return time.perf_counter() - start

    window_bank.cache_clear()  # cold: the one-time bank build and split hashing are inside the clock
    cold_s = generate_all(GroundingTask(config))
    warm_s = generate_all(GroundingTask(config))  # same parameters: the bank comes from the cache

    py_n = min(python_n, n)
    rng = random.Random(seed)
    start = time.perf_counter()
    for lo, hi in _chunks(py_n, chunk):
        python_generate(config, range(lo, hi), rng)
        if on_chunk is not None:
            on_chunk(hi - lo)
    python_s = time.perf_counter() - start
    python_rate = py_n / python_s
    cold_rate, warm_rate = n / cold_s, n / warm_s
    return {
        "config": {"length": length, "n": n, "chunk": chunk, "python_n": py_n, "seed": seed},
        "rows": [
            {"generator": "vectorised (cold, incl. bank build)", "samples": n, "seconds": cold_s, "samples_per_s": cold_rate},
            {"generator": "vectorised (warm)", "samples": n, "seconds": warm_s, "samples_per_s": warm_rate},
            {
                "generator": f"python per-sample (timed on {py_n}, extrapolated)",
                "samples": py_n,
                "seconds": python_s,
                "samples_per_s": python_rate,
                "extrapolated_seconds_for_n": n / python_rate,
            },
        ],
        "ratio": {"cold_vs_python": cold_rate / python_rate, "warm_vs_python": warm_rate / python_rate},
    }
