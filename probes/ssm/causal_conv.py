"""Mamba's short causal depthwise convolution, channels-last, for CPUs without the causal-conv1d kernels.

transformers falls back to `F.conv1d(groups=d_inner)`, whose CPU backward is slow (about 25 ms per layer
for the tiny probe model at T=202, more than the rest of the layer's non-scan work). With a kernel of 4
taps the convolution is just 4 shifted multiply-adds; done in `[batch, T, channels]` layout each one is a
contiguous vectorised op. That layout is also the one the mixer's input projection produces and its
`x_proj` consumes, so the transposes transformers does around the convolution become free views.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ._kwargs import reject_packed_sequences


class _CausalDepthwiseConv(torch.autograd.Function):
    """`out[b, t, c] = bias[c] + sum_j weight[c, j] * x[b, t - (K - 1) + j, c]` (zero before t = 0)."""

    @staticmethod
    def forward(ctx, x_t, weight, bias):  # type: ignore[override]
        batch, seq_len, channels = x_t.shape
        taps = weight.shape[1]
        out = torch.mul(x_t, weight[:, taps - 1])
        for j in range(taps - 1):
            shift = taps - 1 - j
            if shift < seq_len:
                out[:, shift:].addcmul_(x_t[:, : seq_len - shift], weight[:, j])
        if bias is not None:
            out += bias
        ctx.save_for_backward(x_t, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x_t, weight = ctx.saved_tensors
        seq_len = x_t.shape[1]
        taps = weight.shape[1]
        g = grad_out
        grad_x = torch.mul(g, weight[:, taps - 1])
        grad_w = torch.zeros_like(weight)
        work = torch.empty_like(g)
        for j in range(taps):
            shift = taps - 1 - j
            if shift >= seq_len:
                continue
            g_part, x_part = g[:, shift:], x_t[:, : seq_len - shift]
            if shift:
                grad_x[:, : seq_len - shift].addcmul_(g_part, weight[:, j])
            w_part = work[:, : seq_len - shift]
            torch.mul(g_part, x_part, out=w_part)
            grad_w[:, j] = w_part.sum(dim=(0, 1))
        grad_b = g.sum(dim=(0, 1)) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


def causal_conv1d(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Drop-in for transformers' `causal_conv1d_fn`: `hidden_states` `[batch, channels, T]`, `weight`
    `[channels, K]`; returns `[batch, channels, T]` (a transposed view of channels-last memory)."""
    reject_packed_sequences(kwargs)
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d: unsupported activation {activation!r}")
    if weight.dim() != 2 or weight.shape[0] != hidden_states.shape[1]:
        raise ValueError(
            f"causal_conv1d: weight {tuple(weight.shape)} does not fit input {tuple(hidden_states.shape)}"
        )
    x_t = hidden_states.to(weight.dtype).transpose(1, 2)
    out = _CausalDepthwiseConv.apply(x_t, weight, bias).transpose(1, 2)
    if activation is not None:
        out = F.silu(out)
    return out.to(hidden_states.dtype)
