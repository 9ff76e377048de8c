"""Cost of the LM forward pass as a function of the number ``k`` of visual tokens kept by saliency pruning.

``pruning_cost`` returns one row per ``k`` with the LM sequence length, an analytical FLOP count, the count of
torch's ``FlopCounterMode`` on the real model, and the measured forward latency. The ``probes bench`` CLI
calls it; a figure of FLOPs / latency vs ``k`` shows where Transformer (quadratic attention) and Mamba
(linear scan) backbones part ways.

Sequence length: ``text_tokens`` + ``k`` visual tokens + 2 image delimiters (``##``) + the ``&&`` row
separators, counted at their worst case ``min(k, grid_height) - 1`` (every kept patch row distinct); each
delimiter is counted as one token.

Analytical FLOPs (2 per multiply-add, forward only, batch 1):

- ``gpt_neox``: per layer QKV ``6Td²`` + output ``2Td²`` + MLP ``4TdI`` + attention scores and values
  ``4T²d`` (full matrix, no causal discount); plus the LM head ``2TdV``.
- ``mamba``: per layer in_proj ``4TdE`` + causal conv ``2TEK`` + x_proj ``2TE(R+2N)`` + dt_proj ``2TRE`` +
  selective scan ``9TEN`` (the Mamba paper's count) + out_proj ``2TEd``; plus the LM head.
- other families: ``None`` (use the counted column).

``FlopCounterMode`` sees only the matmul/convolution ops it has formulas for: it misses attention inside a
fused SDPA kernel and the scan's elementwise work, so it is a lower bound that checks the linear layers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PretrainedConfig

from probes.errors import UserError


def lm_sequence_length(k: int, grid_height: int, text_tokens: int) -> int:
    """LM tokens for ``k`` kept patches (worst-case separators) plus the text part."""
    rows = min(k, grid_height)
    return text_tokens + k + 2 + max(rows - 1, 0)


def lm_forward_flops(config: PretrainedConfig, seq_len: int) -> int | None:
    """Analytical forward FLOPs of a causal LM on one sequence of ``seq_len`` tokens (``None`` if unknown)."""
    t = seq_len
    d = int(config.hidden_size)
    vocab = int(config.vocab_size)
    layers = int(config.num_hidden_layers)
    head = 2 * t * d * vocab
    if config.model_type == "gpt_neox":
        inner = int(config.intermediate_size)
        per_layer = 6 * t * d * d + 2 * t * d * d + 4 * t * d * inner + 4 * t * t * d
        return layers * per_layer + head
    if config.model_type in ("mamba", "falcon_mamba"):
        e = int(config.intermediate_size)
        n = int(config.state_size)
        r = int(config.time_step_rank)
        kernel = int(config.conv_kernel)
        per_layer = (
            4 * t * d * e + 2 * t * e * kernel + 2 * t * e * (r + 2 * n) + 2 * t * r * e + 9 * t * e * n
            + 2 * t * e * d
        )  # fmt: skip
        return layers * per_layer + head
    return None


def counted_flops(model: torch.nn.Module, seq_len: int, device: torch.device) -> int:
    """FLOPs torch's ``FlopCounterMode`` records for one forward of ``seq_len`` random tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.zeros(1, seq_len, dtype=torch.long, device=device)
    # Parameters stop requiring grad while counting: the counter's module tracker registers gradient hooks on
    # every tensor argument that requires grad, which fails for a Parameter passed under no_grad (transformers
    # 5.25 passes the convolution weight to a kernel-function module).
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(input_ids=ids)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return int(counter.get_total_flops())


def _latency_ms(
    model: torch.nn.Module, seq_len: int, batch_size: int, repeats: int, warmup: int, device: torch.device
) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(0)
    vocab = int(model.get_input_embeddings().weight.shape[0])
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=gen).to(device)
    times: list[float] = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(input_ids=ids)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), (statistics.stdev(times) if len(times) > 1 else 0.0)


def pruning_cost(
    k_values: Sequence[int],
    *,
    backbone: str = "pythia-tiny",
    grid: int | tuple[int, int] = 24,
    text_tokens: int = 32,
    batch_size: int = 1,
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    measure_latency: bool = True,
) -> list[dict[str, Any]]:
    """One row per ``k``: ``k``, ``seq_len``, ``flops_analytical``, ``flops_counted``, ``latency_ms`` (median
    of ``repeats`` forwards after ``warmup``), ``latency_ms_std``, plus ``backbone``, ``family``, ``device``,
    ``batch_size``. ``k`` ranges over 1 … grid patches; ``k`` = all patches is the unpruned baseline.
    """
    from probes.models.registry import load_backbone

    height, width = (grid, grid) if isinstance(grid, int) else grid
    n_patches = height * width
    if not k_values:
        raise UserError("give at least one k")
    bad = [k for k in k_values if not 1 <= k <= n_patches]
    if bad:
        raise UserError(f"k must be in 1..{n_patches} for a {height}x{width} grid, got {bad}")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise UserError("batch_size and repeats must be >= 1 and warmup >= 0")
    dev = torch.device(device)
    bb = load_backbone(backbone)
    model = bb.model.to(dev).eval()
    rows: list[dict[str, Any]] = []
    for k in k_values:
        seq_len = lm_sequence_length(k, height, text_tokens)
        row: dict[str, Any] = {
            "k": int(k),
            "n_patches": n_patches,
            "seq_len": seq_len,
            "flops_analytical": lm_forward_flops(model.config, seq_len),
            "flops_counted": counted_flops(model, seq_len, dev),
            "backbone": backbone,
            "family": bb.family,
            "device": str(dev),
            "batch_size": batch_size,
        }
        if measure_latency:
            row["latency_ms"], row["latency_ms_std"] = _latency_ms(model, seq_len, batch_size, repeats, warmup, dev)
        rows.append(row)
    return rows
