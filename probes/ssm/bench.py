"""Training-step cost of a tiny Mamba against a tiny GPT-NeoX of the same width and depth.

The number that matters is the ratio, not the milliseconds: the two models are stepped alternately in one
process (after one untimed warm-up step each), so both see the same machine load, and the medians of the
interleaved steps are compared. The transformers reference loop is timed for one step only (it is slow).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, MambaConfig, MambaForCausalLM

from .patch import SCAN_CALLS, enable_fast_path

VOCAB = 512


def compare_step_times(
    batch: int = 64,
    seq_len: int = 202,
    d_model: int = 64,
    n_layer: int = 2,
    steps: int = 5,
    *,
    state_size: int = 16,
    include_sequential: bool = True,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time fwd+bwd+AdamW steps of GPT-NeoX, Mamba on the probes fast scan and (1 step) on the reference loop.

    Returns `{"config", "threads", "mamba_path", "ms_per_step": {"gpt_neox", "mamba_fast",
    "mamba_sequential"}, "ratio": {"mamba_fast_vs_gpt_neox", "mamba_sequential_vs_gpt_neox"}}` (the
    sequential entries are None when skipped). `on_step(label)` is called after every timed step.
    """
    if min(batch, seq_len, d_model, n_layer, steps) < 1:
        raise ValueError("compare_step_times: batch, seq_len, d_model, n_layer and steps must be >= 1")
    torch.manual_seed(seed)
    neox = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=d_model,
            num_hidden_layers=n_layer,
            num_attention_heads=max(1, d_model // 16),
            intermediate_size=4 * d_model,
            max_position_embeddings=max(1024, seq_len),
        )
    )
    mamba_reference = MambaForCausalLM(
        MambaConfig(
            vocab_size=VOCAB,
            hidden_size=d_model,
            state_size=state_size,
            num_hidden_layers=n_layer,
            expand=2,
            conv_kernel=4,
        )
    )
    mamba_fast = copy.deepcopy(mamba_reference)
    path = enable_fast_path(mamba_fast)

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, seq_len), generator=generator)
    runners = {name: _Stepper(model, ids) for name, model in (("gpt_neox", neox), ("mamba_fast", mamba_fast))}
    for runner in runners.values():
        runner.step()  # warm-up: allocator, optimizer state, lazy inits
    times: dict[str, list[float]] = {name: [] for name in runners}
    calls_before = SCAN_CALLS[path] if path else 0
    for _ in range(steps):
        for name, runner in runners.items():
            times[name].append(runner.step())
            if on_step is not None:
                on_step(name)
    if path and SCAN_CALLS[path] - calls_before < steps * n_layer:
        raise RuntimeError(f"the Mamba model did not run through {path}")

    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    ms["mamba_sequential"] = None
    if include_sequential:
        ms["mamba_sequential"] = 1000 * _Stepper(mamba_reference, ids).step()
        if on_step is not None:
            on_step("mamba_sequential")
    sequential = ms["mamba_sequential"]
    return {
        "config": {
            "batch": batch,
            "seq_len": seq_len,
            "d_model": d_model,
            "n_layer": n_layer,
            "steps": steps,
            "state_size": state_size,
            "vocab_size": VOCAB,
            "seed": seed,
        },
        "threads": torch.get_num_threads(),
        "mamba_path": path,
        "ms_per_step": ms,
        "ratio": {
            "mamba_fast_vs_gpt_neox": ms["mamba_fast"] / ms["gpt_neox"],
            "mamba_sequential_vs_gpt_neox": None if sequential is None else sequential / ms["gpt_neox"],
        },
    }


class _Stepper:
    """One model, its AdamW and a fixed batch: `step()` runs fwd+bwd+update and returns wall seconds."""

    def __init__(self, model: nn.Module, ids: torch.Tensor) -> None:
        self.model = model.train()
        self.ids = ids
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(self) -> float:
        start = time.perf_counter()
        loss = self.model(input_ids=self.ids, labels=self.ids).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start
