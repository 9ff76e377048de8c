"""Mamba-1 selective scan in plain PyTorch, fast enough to train small Mamba models on a CPU.

Without the `mamba-ssm` CUDA kernels, transformers runs the scan as a Python loop over time with autograd
recording every step, and first materialises two `[B, D, T, N]` tensors. On a CPU that costs about 100x a
GPT-NeoX step of the same size, which makes Mamba-vs-Pythia comparisons impossible to run locally.

What made this version fast (each one measured on the tiny probe configs):

* **A hand-written backward.** The gradient is a reverse-time scan of the same shape as the forward one,
  so the backward costs a small constant times the forward instead of one autograd node per step.
* **No `[B, D, T, N]` tensor at all.** Time is cut into chunks of `k` steps; a chunk's decays, states and
  gradients live in `[k, B, N, D]` buffers that are reused chunk after chunk and stay in the CPU cache. The
  forward keeps only the state at each chunk boundary; the backward recomputes a chunk's states from its
  boundary state. Fresh multi-hundred-megabyte tensors cost more in page faults than the arithmetic, so
  the chunk buffers are also kept between calls (per thread, see `_ScratchCache`).
* **Time-major, `d`-innermost layout** (`[T, B, N, D]`): one time step is a contiguous block, the
  sequential update is a single in-place `addcmul_`, the reductions over `n` are batched matmuls and the
  reductions over `d` are batched row-vector x matrix products. Everything that does not depend on the recurrence
  (decays, input terms, all reductions) is one batched op per chunk rather than one per step.

The recurrence is the exact sequential one (no log-space or associative reformulation), so results match
transformers' reference loop to rounding error. The state is kept in float32 (float64 for float64 input).
The code is device-agnostic: CUDA tensors work, they are just not the case it was tuned for.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

#: Elements of one chunk buffer (`k * batch * state_size * d_inner`). 512K float32 (2 MB) keeps the five
#: chunk buffers of the backward in a CPU's last-level cache; on the probe config (state 64x16x128, T=202)
#: k=4 measured faster than k=8 (~8%) and k=16 (~25%), and k=2 was slower again (per-op overhead).
DEFAULT_CHUNK_ELEMENTS = 1 << 19


def chunk_length(seq_len: int, state_elements: int, budget: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Steps per chunk: as many as fit `budget` elements, at least 1, at most `seq_len`."""
    return max(1, min(seq_len, budget // max(1, state_elements)))


class _ChunkedSelectiveScan(torch.autograd.Function):
    """`y[t] = sum_n C[t, n] h[t, n]` with `h[t] = exp(delta[t] A) h[t-1] + delta[t] u[t] B[t]`, `h[-1] = 0`.

    Layout: `u`, `delta`: `[T, B, D]`; `a_t` (A transposed): `[N, D]`; `b`, `c`: `[T, B, N]`, all contiguous
    and of one floating dtype. Returns `y` `[T, B, D]` and the final state `[B, N, D]` (not differentiable).
    """

    @staticmethod
    def forward(ctx, u, delta, a_t, b, c, chunk: int):  # type: ignore[override]
        seq_len, batch, d_inner = u.shape
        n_state = a_t.shape[0]
        k_max = min(chunk, seq_len)
        starts = range(0, seq_len, k_max)
        du = delta * u
        scratch = _workspace(u, 2, (k_max, batch, n_state, d_inner))
        decay, states = scratch[0], scratch[1]
        boundary = u.new_empty(len(starts), batch, n_state, d_inner)
        y = u.new_empty(seq_len, batch, d_inner)
        prev = None
        for i, s in enumerate(starts):
            e = min(s + k_max, seq_len)
            _chunk_states(delta[s:e], du[s:e], a_t, b[s:e], prev, decay, states)
            k = e - s
            _rowvec_matmul(c[s:e], states[:k], out=y[s:e])
            boundary[i].copy_(states[k - 1])
            prev = boundary[i]
        ctx.chunk = k_max
        ctx.save_for_backward(u, delta, a_t, b, c, boundary)
        last = boundary[-1].clone()
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, _grad_last):  # type: ignore[override]
        u, delta, a_t, b, c, boundary = ctx.saved_tensors
        seq_len, batch, d_inner = u.shape
        n_state = a_t.shape[0]
        k_max = ctx.chunk
        gy = grad_y.contiguous()
        du = delta * u

        scratch = _workspace(u, 5, (k_max, batch, n_state, d_inner))
        decay, states, work = scratch[0], scratch[1], scratch[2]
        grads = scratch[3]  # dLoss/dh[t], accumulated backwards in time
        g_a_acc = scratch[4].zero_()  # dLoss/dA^T per (t, b), summed once after the loop
        carry = u.new_zeros(batch, n_state, d_inner)  # decay[t+1] * grads[t+1] flowing into step t

        g_du = u.new_empty(seq_len, batch, d_inner)  # dLoss/d(delta * u)
        g_delta_a = u.new_empty(seq_len, batch, d_inner)  # dLoss/d delta through the decay exp(delta A)
        g_b = u.new_empty(seq_len, batch, n_state)
        g_c = u.new_empty(seq_len, batch, n_state)

        starts = list(range(0, seq_len, k_max))
        for i in reversed(range(len(starts))):
            s = starts[i]
            e = min(s + k_max, seq_len)
            k = e - s
            prev = boundary[i - 1] if i > 0 else None
            _chunk_states(delta[s:e], du[s:e], a_t, b[s:e], prev, decay, states)
            dec, st, g, w = decay[:k], states[:k], grads[:k], work[:k]

            # Reverse recurrence: g[t] = C[t] gy[t] + decay[t+1] g[t+1].
            torch.mul(c[s:e].unsqueeze(-1), gy[s:e].unsqueeze(2), out=g)
            g[k - 1].add_(carry)
            for j in range(k - 2, -1, -1):
                g[j].addcmul_(dec[j + 1], g[j + 1])
            torch.mul(dec[0], g[0], out=carry)

            # Reductions that need no recurrence, batched over the chunk.
            # (reductions are written as row-vector x matrix products: MKL's fast batched shape)
            _rowvec_matmul(gy[s:e], st.transpose(-1, -2), out=g_c[s:e])
            _rowvec_matmul(du[s:e], g.transpose(-1, -2), out=g_b[s:e])
            _rowvec_matmul(b[s:e], g, out=g_du[s:e])

            # p = g * decay * h[t-1]: the gradient reaching the exponent delta[t] * A.
            if prev is None:
                w[0].zero_()
            else:
                torch.mul(g[0], prev, out=w[0])
            if k > 1:
                torch.mul(g[1:], st[:-1], out=w[1:])
            w.mul_(dec)
            g_a_acc[:k].addcmul_(w, delta[s:e].unsqueeze(2))
            w.mul_(a_t)
            torch.sum(w, dim=2, out=g_delta_a[s:e])

        g_a_t = g_a_acc.sum(dim=(0, 1))
        g_u = g_du * delta
        g_delta = torch.addcmul(g_delta_a, g_du, u)
        return g_u, g_delta, g_a_t, g_b, g_c, None


class _ScratchCache(threading.local):
    """Per-thread scratch memory for the chunk buffers, kept between calls.

    A freshly allocated CPU tensor costs a page fault per 4 KiB on first touch, and the allocator hands the
    chunk buffers back to the OS after every call: at short sequence lengths that cost more than the scan.
    The buffers never outlive one forward or backward call (nothing is saved from them), so reusing them is
    safe; per-thread storage keeps concurrent callers apart.
    """

    def __init__(self) -> None:
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


_SCRATCH = _ScratchCache()


def _workspace(like: torch.Tensor, count: int, shape: tuple[int, ...]) -> torch.Tensor:
    """`[count, *shape]` uninitialised scratch on `like`'s device and dtype (reused across calls on CPU)."""
    numel = count * math.prod(shape)
    if like.device.type != "cpu":  # the CUDA caching allocator already recycles memory
        return like.new_empty(count, *shape)
    key = (like.device, like.dtype)
    buffer = _SCRATCH.buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        with torch.inference_mode(False):  # a normal tensor: usable both inside and outside inference mode
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
        _SCRATCH.buffers[key] = buffer
    return buffer[:numel].view(count, *shape)


def release_scratch() -> None:
    """Free this thread's cached scan scratch memory."""
    _SCRATCH.buffers.clear()


def _rowvec_matmul(vec: torch.Tensor, mat: torch.Tensor, out: torch.Tensor) -> None:
    """`out[k, b] = vec[k, b] @ mat[k, b]` for `vec` `[k, B, I]`, `mat` `[k, B, I, J]`, `out` `[k, B, J]`."""
    k, batch, inner = vec.shape
    torch.bmm(
        vec.reshape(k * batch, 1, inner),
        mat.reshape(k * batch, inner, mat.shape[-1]),
        out=out.view(k * batch, 1, out.shape[-1]),
    )


def _chunk_states(
    delta: torch.Tensor,
    du: torch.Tensor,
    a_t: torch.Tensor,
    b: torch.Tensor,
    prev: torch.Tensor | None,
    decay: torch.Tensor,
    states: torch.Tensor,
) -> None:
    """Fill `decay[:k] = exp(delta A)` and `states[:k] = h` for one chunk of `k` steps, starting from `prev`."""
    k = delta.shape[0]
    dec, st = decay[:k], states[:k]
    torch.mul(delta.unsqueeze(2), a_t, out=dec)
    dec.exp_()
    torch.mul(b.unsqueeze(-1), du.unsqueeze(2), out=st)
    if prev is not None:
        st[0].addcmul_(dec[0], prev)
    for j in range(1, k):
        st[j].addcmul_(dec[j], st[j - 1])


def selective_scan(
    hidden_states: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for transformers' `mamba_selective_scan` (and mamba-ssm's `selective_scan_fn`).

    Shapes follow the kernel convention: `hidden_states`, `dt`, `z`: `[batch, d_inner, T]`; `A`:
    `[d_inner, N]`; `B`, `C`: `[batch, N, T]`; `D`, `delta_bias`: `[d_inner]`. Returns `y` `[batch, d_inner, T]`
    in the input dtype and, with `return_last_state`, the final state `[batch, d_inner, N]` (float32).
    `chunk_size` overrides the number of time steps processed per chunk (see `chunk_length`).
    """
    batch, d_inner, seq_len = hidden_states.shape
    n_state = A.shape[-1]
    if dt.shape != hidden_states.shape or A.shape != (d_inner, n_state):
        raise ValueError(
            f"selective_scan: dt {tuple(dt.shape)} / A {tuple(A.shape)} do not fit x {tuple(hidden_states.shape)}"
        )
    if B.shape != (batch, n_state, seq_len) or C.shape != (batch, n_state, seq_len):
        raise ValueError(
            f"selective_scan: B/C must be {(batch, n_state, seq_len)}, got {tuple(B.shape)}/{tuple(C.shape)}"
        )
    compute = torch.promote_types(hidden_states.dtype, torch.float32)

    # Everything below runs time-major (`[T, batch, ...]`), the layout the scan wants; the result is handed
    # back as a `[batch, d_inner, T]` view of it, so no transpose is paid on the way out.
    u = _time_major(hidden_states, compute)
    delta = _time_major(dt, compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)
    if delta_softplus:
        delta = F.softplus(delta)

    chunk = chunk_size if chunk_size is not None else chunk_length(seq_len, batch * n_state * d_inner)
    y, last = _ChunkedSelectiveScan.apply(
        u,
        delta,
        A.to(compute).t().contiguous(),
        _time_major(B, compute),
        _time_major(C, compute),
        max(1, int(chunk)),
    )
    if D is not None:
        y = torch.addcmul(y, u, D.to(compute))
    if z is not None:
        y = y * F.silu(z.to(compute).permute(2, 0, 1))
    out = y.permute(1, 2, 0).to(hidden_states.dtype)
    if return_last_state:
        return out, last.transpose(1, 2).contiguous()
    return out


def _time_major(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`[batch, C, T]` -> contiguous `[T, batch, C]` in `dtype`, in two steps that are each cheap copies."""
    return t.to(dtype).transpose(1, 2).contiguous().transpose(0, 1).contiguous()
