"""Keyword arguments transformers forwards to kernel functions that the PyTorch replacements cannot honour."""

from __future__ import annotations

from typing import Any


def reject_packed_sequences(kwargs: dict[str, Any]) -> None:
    """Raise if a kernel-only option (packed-sequence `seq_idx` / `cu_seqlens`, ...) is actually set.

    transformers passes such options through `**kwargs`; silently ignoring them would mix the states of
    sequences packed into one row, so (like transformers' own fallback) refuse instead.
    """
    unsupported = sorted(k for k, v in kwargs.items() if v is not None)
    if unsupported:
        raise ValueError(
            f"the probes PyTorch SSM path does not support {unsupported} (needs mamba-ssm kernels)"
        )
