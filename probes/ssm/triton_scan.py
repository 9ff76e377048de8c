"""Mamba-1 selective scan in Triton: forward and backward kernels, for GPUs without mamba-ssm's binaries.

mamba-ssm's CUDA kernels (Gu & Dao, "Mamba", 2023, §3.3.2: kernel fusion, a parallel scan with the state
kept in fast memory, recomputation in the backward; the paper is not in /work/shared/papers) are the only fast
GPU scan transformers knows, and their wheels exist only for some torch/CUDA pairs. Triton ships with every
CUDA build of torch, so a Triton scan runs wherever torch does. Same contract as mamba-ssm's
`selective_scan_fn`: `u`, `delta`, `z` `[batch, d_inner, L]`, `A` `[d_inner, N]`, `B`, `C` `[batch, N, L]`,
`D`, `delta_bias` `[d_inner]`; returns `y` `[batch, d_inner, L]` in `u`'s dtype and, with
`return_last_state`, the final state `[batch, d_inner, N]` in float32.

How the kernels work (the ideas of mamba-ssm's kernel, written for Triton's block model):

* **Grid over (batch, d_inner blocks); time in chunks.** A program owns `BLOCK_D` channels of one sequence
  and walks time in chunks of `CHUNK` steps. A chunk is a `[BLOCK_D, N, CHUNK]` register tile: the decays
  `exp(delta A)` and inputs `delta u B` are built elementwise, the recurrence `h_t = a_t h_{t-1} + b_t` is a
  parallel `tl.associative_scan` along time with the affine-map combine `(a1, b1)∘(a2, b2) = (a1 a2, a2 b1 + b2)`,
  and the state entering the chunk is folded in afterwards (`h_t = (prod a) h_in + scanned b`). The state
  never leaves the chip; nothing of size batch·d_inner·N·L is ever written.
* **Per-chunk checkpoints.** The forward stores only the state entering each chunk after the first
  (`[batch, d_inner, n_chunks - 1, N]` float32: at L=200, N=16, chunks of 32, about 1x one bf16 input), so
  backward memory grows like the inputs.
* **Backward = recompute + reverse scan.** Chunks are visited last to first: the chunk's states are recomputed
  from its checkpoint, then `g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1}` is a reverse associative scan with
  the same combine (the decay of step `t+1` is read at offset `t+1`, so the last step of a chunk sees the
  first decay of the next one), and `g` entering the previous chunk is carried in registers. The gradient
  reaching the exponent uses `a_t h_{t-1} = h_t - delta_t u_t B_t`, so no shifted state tile is needed.
* **Deterministic reductions.** `dB`, `dC` sum over channels and `dA`, `dD`, `d delta_bias` over the batch.
  mamba-ssm uses atomics for these (run-to-run rounding noise); here every program writes its own partial
  sums (`dB`/`dC` per group of channel blocks, looped inside one program) and torch adds them up in a fixed
  order, so the same inputs give bitwise the same gradients.

Arithmetic is float32 whatever the input dtype (bf16/fp16 inputs are upcast on load, results cast on store).
Kernels are built on first use, not at import: `triton.jit` decides at decoration time whether to interpret
(`TRITON_INTERPRET=1`, read through `triton.knobs.runtime.interpret`), so a test that sets the variable
before its first call gets the interpreter, which runs the same kernels on CPU tensors.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any

import torch

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only on installs without triton
    triton = None
    tl = None

#: Target elements of one `[BLOCK_D, N, CHUNK]` register tile (2 x 16 x 32 for Mamba's N=16), the longest time
#: chunk, and warps per program. Tuned on an H200 with `probes bench scan` (B=64, L=200, bf16; README
#: "Performance"): against the first guess (2 x 16 x 64, 4/8 warps) the scan's forward+backward went from 12.3 to
#: 6.6 ms at the mamba-small layer shape (d_inner 1536) and from 31.8 to 17.0 ms at mamba-1.4b's (4096), with
#: channel blocks of 1, 2 or 4 within 6 % of each other. `tests/test_triton_scan.py` compiles both kernels for
#: sm_90 with these settings and checks that they do not spill registers.
TILE_ELEMENTS = 1024
MAX_CHUNK = 32
FWD_WARPS = 2
BWD_WARPS = 4


def triton_available() -> bool:
    """Whether the Triton scan can run at all here (triton imports)."""
    return triton is not None


def interpreting() -> bool:
    """Whether Triton is in interpreter mode (`TRITON_INTERPRET=1`): kernels then run on CPU tensors."""
    return triton is not None and bool(triton.knobs.runtime.interpret)


# ---------------------------------------------------------------------------------------------------------
# Kernel sources. Plain functions here; `_kernels()` turns them into `triton.jit` functions on first use.
# They call only Triton builtins (`tl.full`, `tl.reduce`, `tl.exp`, ...), never `triton.language.standard`'s
# own jit functions (`tl.zeros`, `tl.sum`, `tl.sigmoid`): those are decorated when triton is imported, so
# they would stay compiled-mode functions if `TRITON_INTERPRET` is set only later. Sums are
# `tl.reduce(x, axis, _sum_fn)` with `_sum_fn` = triton's own `_sum_combine` (exactly what `tl.sum` compiles
# to; the interpreter recognises it and uses numpy, where any other combine function runs element by
# element in Python).
# ---------------------------------------------------------------------------------------------------------


def _combine(a1, b1, a2, b2):
    """Compose two affine steps `x -> a x + b` (first (a1, b1), then (a2, b2)). With `reverse=True` Triton
    folds from the end, so the same function gives `x_t = a_t x_{t+1} + b_t`."""
    return a1 * a2, a2 * b1 + b2


def _add(a, b):
    return a + b


_sum_fn: Any = None  # the reduction combine function; bound per mode in the kernels' namespace (`_kernels`)


def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


def _softplus(x):
    """torch's softplus (threshold 20: identity above it)."""
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)


def _delta_tile(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Load a `[BLOCK_D, CHUNK]` delta tile; returns (delta after bias/softplus, zero where masked; pre-softplus)."""
    pre = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre = pre + bias[:, None]
    dt = pre
    if SOFTPLUS:
        dt = _softplus(pre)
    return tl.where(mask, dt, 0.0), pre


def _channel_params(A_ptr, D_ptr, bias_ptr, offs_d, offs_n, mask_d, mask_dn, N,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr):
    """A block of channels' parameters, as both kernels need them: (A as `[BLOCK_D, N_PAD, 1]`, D, delta bias);
    D and the bias are zeros when absent."""
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    Dv = tl.full([BLOCK_D], 0.0, tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    bias = tl.full([BLOCK_D], 0.0, tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return A[:, :, None], Dv, bias


def _fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    y_ptr, ckpt_ptr, last_ptr,
    L, DIM, N, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_CKPT: tl.constexpr, BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, N_PAD)
    offs_t = tl.arange(0, CHUNK)
    mask_d = offs_d < DIM
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]

    A3, Dv, bias = _channel_params(A_ptr, D_ptr, bias_ptr, offs_d, offs_n, mask_d, mask_dn, N, HAS_D, HAS_BIAS, BLOCK_D)

    row = (pid_b * DIM + offs_d) * L  # start of each channel's time series in u / delta / z / y
    n_row = (pid_b * N + offs_n) * L  # start of each state row in B / C
    ck_row = (pid_b * DIM + offs_d[:, None]) * (n_chunks - 1) * N + offs_n[None, :]
    h = tl.full([BLOCK_D, N_PAD], 0.0, tl.float32)
    for c in range(0, n_chunks):
        if SAVE_CKPT:  # the state entering chunk c >= 1 (chunk 0 starts from zero: nothing to keep)
            tl.store(ckpt_ptr + ck_row + (c - 1) * N, h, mask=mask_dn & (c > 0))
        t = c * CHUNK + offs_t
        mask_t = t < L
        m2 = mask_d[:, None] & mask_t[None, :]
        offs = row[:, None] + t[None, :]
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, _ = _delta_tile(delta_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        m_nt = mask_n[:, None] & mask_t[None, :]
        Bt = tl.load(B_ptr + n_row[:, None] + t[None, :], mask=m_nt, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + n_row[:, None] + t[None, :], mask=m_nt, other=0.0).to(tl.float32)

        decay = tl.exp(dt[:, None, :] * A3)  # 1 where masked: the state passes through unchanged
        inp = (dt * u)[:, None, :] * Bt[None, :, :]
        pa, pb = tl.associative_scan((decay, inp), 2, _combine)
        hs = pa * h[:, :, None] + pb
        y = tl.reduce(hs * Ct[None, :, :], 1, _sum_fn)
        if HAS_D:
            y = y + Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(tl.float32)
            y = y * (z * _sigmoid(z))
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=m2)
        h = tl.reduce(tl.where(offs_t[None, None, :] == CHUNK - 1, hs, 0.0), 2, _sum_fn)
    tl.store(last_ptr + (pid_b * DIM + offs_d[:, None]) * N + offs_n[None, :], h, mask=mask_dn)


def _bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, dy_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr,
    L, DIM, N, n_chunks, n_groups, blocks_per_group,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_g = tl.program_id(1)
    offs_n = tl.arange(0, N_PAD)
    offs_t = tl.arange(0, CHUNK)
    mask_n = offs_n < N
    n_row = (pid_b * N + offs_n) * L
    part_row = ((pid_b * n_groups + pid_g) * N + offs_n) * L  # this program's rows of the dB / dC partials

    for i in range(0, blocks_per_group):
        offs_d = (pid_g + i * n_groups) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_d < DIM
        mask_dn = mask_d[:, None] & mask_n[None, :]
        A3, Dv, bias = _channel_params(A_ptr, D_ptr, bias_ptr, offs_d, offs_n, mask_d, mask_dn, N, HAS_D, HAS_BIAS,
                                       BLOCK_D)
        row = (pid_b * DIM + offs_d) * L
        ck_row = (pid_b * DIM + offs_d[:, None]) * (n_chunks - 1) * N + offs_n[None, :]

        dA_acc = tl.full([BLOCK_D, N_PAD], 0.0, tl.float32)
        dD_acc = tl.full([BLOCK_D], 0.0, tl.float32)
        dbias_acc = tl.full([BLOCK_D], 0.0, tl.float32)
        g_next = tl.full([BLOCK_D, N_PAD], 0.0, tl.float32)  # dL/dh at the first step of the later chunk
        for j in range(0, n_chunks):
            c = n_chunks - 1 - j
            t = c * CHUNK + offs_t
            mask_t = t < L
            m2 = mask_d[:, None] & mask_t[None, :]
            offs = row[:, None] + t[None, :]
            m_nt = mask_n[:, None] & mask_t[None, :]

            # Recompute the chunk's states from its checkpoint, exactly as the forward did.
            h0 = tl.load(ckpt_ptr + ck_row + (c - 1) * N, mask=mask_dn & (c > 0), other=0.0)
            u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
            dt, pre = _delta_tile(delta_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
            Bt = tl.load(B_ptr + n_row[:, None] + t[None, :], mask=m_nt, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + n_row[:, None] + t[None, :], mask=m_nt, other=0.0).to(tl.float32)
            decay = tl.exp(dt[:, None, :] * A3)
            dtu = dt * u
            inp = dtu[:, None, :] * Bt[None, :, :]
            pa, pb = tl.associative_scan((decay, inp), 2, _combine)
            hs = pa * h0[:, :, None] + pb

            # Output side: out = (y_ssm + D u) * silu(z).
            gy = tl.load(dy_ptr + offs, mask=m2, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(tl.float32)
                sig = _sigmoid(z)
                y = tl.reduce(hs * Ct[None, :, :], 1, _sum_fn)
                if HAS_D:
                    y = y + Dv[:, None] * u
                dz = gy * y * sig * (1.0 + z * (1.0 - sig))
                tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=m2)
                gy = gy * z * sig
            du = tl.full([BLOCK_D, CHUNK], 0.0, tl.float32)
            if HAS_D:
                dD_acc += tl.reduce(gy * u, 1, _sum_fn)
                du = gy * Dv[:, None]

            # Reverse recurrence g_t = C_t gy_t + a_{t+1} g_{t+1}, a_{t+1} read one step ahead.
            t1 = t + 1
            m_next = mask_d[:, None] & (t1 < L)[None, :]
            dt_next, _ = _delta_tile(delta_ptr, row[:, None] + t1[None, :], m_next, bias, HAS_BIAS, SOFTPLUS)
            decay_next = tl.where((t1 < L)[None, None, :], tl.exp(dt_next[:, None, :] * A3), 0.0)
            ga, gb = tl.associative_scan((decay_next, Ct[None, :, :] * gy[:, None, :]), 2, _combine, reverse=True)
            g = gb + ga * g_next[:, :, None]
            g_next = tl.reduce(tl.where(offs_t[None, None, :] == 0, g, 0.0), 2, _sum_fn)

            # Gradients of the chunk's inputs.
            g_dtu = tl.reduce(g * Bt[None, :, :], 1, _sum_fn)  # dL/d(delta u)
            q = g * (hs - inp)  # dL/d(delta A) = g_t a_t h_{t-1}
            dA_acc += tl.reduce(q * dt[:, None, :], 2, _sum_fn)
            ddt = tl.reduce(q * A3, 1, _sum_fn) + g_dtu * u
            if SOFTPLUS:
                ddt = ddt * _sigmoid(pre)
            ddt = tl.where(m2, ddt, 0.0)
            dbias_acc += tl.reduce(ddt, 1, _sum_fn)
            du = du + g_dtu * dt
            tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddelta_ptr + offs, ddt.to(ddelta_ptr.dtype.element_ty), mask=m2)

            part = part_row[:, None] + t[None, :]
            dB_part = tl.reduce(g * dtu[:, None, :], 0, _sum_fn)
            dC_part = tl.reduce(hs * gy[:, None, :], 0, _sum_fn)
            tl.store(dB_ptr + part, tl.load(dB_ptr + part, mask=m_nt, other=0.0) + dB_part, mask=m_nt)
            tl.store(dC_ptr + part, tl.load(dC_ptr + part, mask=m_nt, other=0.0) + dC_part, mask=m_nt)

        tl.store(dA_ptr + (pid_b * DIM + offs_d[:, None]) * N + offs_n[None, :], dA_acc, mask=mask_dn)
        tl.store(dD_ptr + pid_b * DIM + offs_d, dD_acc, mask=mask_d)
        tl.store(dbias_ptr + pid_b * DIM + offs_d, dbias_acc, mask=mask_d)


_BUILT: dict[bool, dict[str, Any]] = {}


def _kernels() -> dict[str, Any]:
    """The jit'd kernels for the current interpret mode, built once per mode.

    Each source function is re-created in a private namespace holding the jit'd helpers, so the kernels'
    calls to the helpers (`_combine`, `_softplus`, ...) resolve to jit functions of the same mode.
    """
    if triton is None:
        raise RuntimeError("the Triton selective scan needs the `triton` package")
    mode = interpreting()
    namespace = _BUILT.get(mode)
    if namespace is None:
        namespace = {"tl": tl, "triton": triton}
        namespace["_sum_fn"] = getattr(tl.standard, "_sum_combine", None)
        for fn in (_add, _sigmoid, _combine, _softplus, _delta_tile, _channel_params, _fwd_kernel, _bwd_kernel):
            copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
            copy.__annotations__ = dict(fn.__annotations__)
            copy.__doc__ = fn.__doc__
            copy.__module__ = fn.__module__
            copy.__qualname__ = fn.__qualname__
            namespace[fn.__name__] = triton.jit(copy)
        if namespace["_sum_fn"] is None:  # a triton without the private name: same sum, slower interpreter
            namespace["_sum_fn"] = namespace["_add"]
        _BUILT[mode] = namespace
    return namespace


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def launch_config(seq_len: int, d_inner: int, n_state: int) -> tuple[int, int]:
    """(BLOCK_D, CHUNK): chunks of up to MAX_CHUNK steps, and as many channels as keep a tile near TILE_ELEMENTS."""
    chunk = min(MAX_CHUNK, max(16, _next_pow2(seq_len)))
    block_d = max(1, min(_next_pow2(d_inner), TILE_ELEMENTS // (_next_pow2(n_state) * chunk)))
    return block_d, chunk


def _backward_groups(device: torch.device, batch: int, n_blocks: int) -> int:
    """Programs per sequence in the backward: enough to fill the GPU, few enough to keep the dB/dC partial
    sums (`groups x batch x N x L` float32) small. Interpreted, one program per sequence is fastest."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(n_blocks, -(-8 * sms // batch)))


def _on_device(t: torch.Tensor) -> Any:
    """Triton launches on the current CUDA device: make it the tensors' one (a no-op context on CPU)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


class _TritonSelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, block_d, chunk, groups, warps):  # type: ignore[override]
        batch, dim, seq_len = u.shape
        n_state = A.shape[1]
        n_chunks = -(-seq_len // chunk)
        k = _kernels()
        needs_grad = any(ctx.needs_input_grad[:8])
        y = torch.empty_like(u)
        last = torch.empty(batch, dim, n_state, device=u.device, dtype=torch.float32)
        ckpt = (torch.empty(batch, dim, max(1, n_chunks - 1), n_state, device=u.device, dtype=torch.float32)
                if needs_grad else last)
        grid = (batch, -(-dim // block_d))
        with _on_device(u):
            k["_fwd_kernel"][grid](
                u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
                delta_bias if delta_bias is not None else u, y, ckpt, last,
                seq_len, dim, n_state, n_chunks,
                HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
                SAVE_CKPT=needs_grad, BLOCK_D=block_d, N_PAD=_next_pow2(n_state), CHUNK=chunk,
                num_warps=warps[0],
            )
        ctx.config = (softplus, block_d, chunk, groups, n_chunks, warps[1])
        ctx.has = (D is not None, z is not None, delta_bias is not None)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, dy, _dlast):  # type: ignore[override]
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        softplus, block_d, chunk, groups, n_chunks, bwd_warps = ctx.config
        has_d, has_z, has_bias = ctx.has
        batch, dim, seq_len = u.shape
        n_state = A.shape[1]
        n_blocks = -(-dim // block_d)
        groups = groups or _backward_groups(u.device, batch, n_blocks)
        groups = max(1, min(groups, n_blocks))
        f32 = {"device": u.device, "dtype": torch.float32}
        dy = dy.contiguous()
        du = torch.empty_like(u)
        ddelta = torch.empty_like(delta)
        dz = torch.empty_like(z) if has_z else du
        dA_part = torch.empty(batch, dim, n_state, **f32)
        dD_part = torch.empty(batch, dim, **f32)
        dbias_part = torch.empty(batch, dim, **f32)
        dB_part = torch.zeros(batch, groups, n_state, seq_len, **f32)
        dC_part = torch.zeros(batch, groups, n_state, seq_len, **f32)
        with _on_device(u):
            _kernels()["_bwd_kernel"][(batch, groups)](
                u, delta, A, B, C, D if has_d else u, z if has_z else u, delta_bias if has_bias else u, ckpt, dy,
                du, ddelta, dz, dA_part, dD_part, dbias_part, dB_part, dC_part,
                seq_len, dim, n_state, n_chunks, groups, -(-n_blocks // groups),
                HAS_D=has_d, HAS_Z=has_z, HAS_BIAS=has_bias, SOFTPLUS=softplus,
                BLOCK_D=block_d, N_PAD=_next_pow2(n_state), CHUNK=chunk, num_warps=bwd_warps,
            )
        return (
            du,
            ddelta,
            dA_part.sum(0).to(A.dtype),
            dB_part.sum(1).to(B.dtype),
            dC_part.sum(1).to(C.dtype),
            dD_part.sum(0).to(D.dtype) if has_d else None,
            dz if has_z else None,
            dbias_part.sum(0).to(delta_bias.dtype) if has_bias else None,
            None, None, None, None, None,
        )


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    block_d: int | None = None,
    chunk: int | None = None,
    groups: int | None = None,
    warps: tuple[int, int] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """mamba-ssm's `selective_scan_fn`, in Triton. See the module docstring for layouts.

    `block_d` (power of 2), `chunk` (power of 2), `groups` (backward programs per sequence) and `warps`
    (forward, backward) override the launch configuration; tests use them to cover partial blocks and several
    chunks on tiny shapes, `probes bench scan` to time configurations.
    Inputs must be CUDA tensors, or CPU tensors with `TRITON_INTERPRET=1` set before the first call.
    """
    batch, dim, seq_len = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A {tuple(A.shape)} does not fit u {tuple(u.shape)}")
    n_state = A.shape[1]
    if delta.shape != u.shape or (z is not None and z.shape != u.shape):
        raise ValueError(f"selective_scan: delta / z must have u's shape {tuple(u.shape)}")
    if B.shape != (batch, n_state, seq_len) or C.shape != (batch, n_state, seq_len):
        raise ValueError(
            f"selective_scan: B/C must be {(batch, n_state, seq_len)} (input-dependent, one group), "
            f"got {tuple(B.shape)}/{tuple(C.shape)}"
        )
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and vec.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be ({dim},), got {tuple(vec.shape)}")
    if seq_len < 1:
        raise ValueError("selective_scan: sequence length must be >= 1")
    auto_block, auto_chunk = launch_config(seq_len, dim, n_state)
    block_d = block_d or auto_block
    chunk = chunk or auto_chunk
    if block_d & (block_d - 1) or chunk & (chunk - 1):
        raise ValueError(f"selective_scan: block_d ({block_d}) and chunk ({chunk}) must be powers of 2")
    if not (u.is_cuda or interpreting()):
        raise ValueError("selective_scan (Triton): needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors")

    def c(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.contiguous()

    y, last = _TritonSelectiveScan.apply(
        c(u), c(delta), c(A), c(B), c(C), c(D), c(z), c(delta_bias), bool(delta_softplus), block_d, chunk, groups,
        warps or (FWD_WARPS, BWD_WARPS),
    )
    return (y, last) if return_last_state else y
