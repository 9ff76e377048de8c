"""Mamba's causal depthwise convolution on CUDA through cuDNN, for GPUs without the causal-conv1d kernels.

The shift-and-add version in `causal_conv` was tuned for CPU caches (four channels-last multiply-adds, each a
separate pass over memory). On a GPU, `F.conv1d(groups=channels)` is one cuDNN depthwise kernel per direction,
reading the input once; it is the same computation transformers falls back to, with the result cut to the
first `T` outputs so that position `t` sees inputs `t-K+1 … t` only (left padding `K-1`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._kwargs import reject_packed_sequences


def causal_conv1d_cudnn(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Drop-in for `causal_conv1d_fn`: `hidden_states` `[batch, channels, T]`, `weight` `[channels, K]`."""
    reject_packed_sequences(kwargs)
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d: unsupported activation {activation!r}")
    channels, seq_len = hidden_states.shape[1], hidden_states.shape[2]
    if weight.dim() != 2 or weight.shape[0] != channels:
        raise ValueError(
            f"causal_conv1d: weight {tuple(weight.shape)} does not fit input {tuple(hidden_states.shape)}"
        )
    x = hidden_states.to(weight.dtype) if not torch.is_autocast_enabled(hidden_states.device.type) else hidden_states
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=weight.shape[1] - 1, groups=channels)[..., :seq_len]
    if activation is not None:
        out = F.silu(out)
    return out.to(hidden_states.dtype)
