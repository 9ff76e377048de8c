"""`probes.ssm.selective_scan` against transformers' reference selective scan (outputs and every gradient)."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
import transformers.models.mamba.modeling_mamba as modeling_mamba

from probes.ssm.selective_scan import chunk_length, selective_scan

# The undecorated PyTorch function transformers runs without mamba-ssm: the per-time-step loop.
REFERENCE = inspect.unwrap(modeling_mamba.mamba_selective_scan)
NAMES = ("x", "dt", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(seed: int, seq_len: int, dtype=torch.float32, batch=3, d_inner=6, n_state=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d_inner, seq_len, generator=g, dtype=dtype)
    dt = torch.randn(batch, d_inner, seq_len, generator=g, dtype=dtype) - 1.0
    a = -torch.exp(torch.randn(d_inner, n_state, generator=g, dtype=dtype))
    b = torch.randn(batch, n_state, seq_len, generator=g, dtype=dtype)
    c = torch.randn(batch, n_state, seq_len, generator=g, dtype=dtype)
    d = torch.randn(d_inner, generator=g, dtype=dtype)
    z = torch.randn(batch, d_inner, seq_len, generator=g, dtype=dtype)
    bias = torch.randn(d_inner, generator=g, dtype=dtype) * 0.5
    return [t.requires_grad_() for t in (x, dt, a, b, c, d, z, bias)]


def run(fn, inputs, *, with_dz: bool, softplus: bool = True, **kwargs):
    x, dt, a, b, c, d, z, bias = inputs
    return fn(
        x,
        dt,
        a,
        b,
        c,
        D=d if with_dz else None,
        z=z if with_dz else None,
        delta_bias=bias,
        delta_softplus=softplus,
        **kwargs,
    )


def assert_close_grads(out, ref, inputs, grad_out, rtol, atol):
    used = [t for t in inputs if t.requires_grad]
    got = torch.autograd.grad(out, used, grad_out, allow_unused=True)
    want = torch.autograd.grad(ref, used, grad_out, allow_unused=True)
    for name, g, w in zip(NAMES[: len(used)], got, want, strict=True):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0, name
            continue
        assert g is not None, name
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol * float(w.abs().max()), msg=f"grad of {name}")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("seq_len", [1, 2, 7, 33])
@pytest.mark.parametrize("with_dz", [True, False])
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_matches_transformers_reference_fp32(seed, seq_len, with_dz, chunk):
    inputs = make_inputs(seed, seq_len)
    out = run(selective_scan, inputs, with_dz=with_dz, chunk_size=chunk)
    ref = run(REFERENCE, inputs, with_dz=with_dz)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 100))
    assert_close_grads(out, ref, inputs, grad_out, rtol=1e-5, atol=1e-5)


def naive_scan(x, dt, a, b, c, d, z, bias):
    """The definition, written for clarity in float64: h[t] = exp(dt A) h[t-1] + dt x[t] B[t]."""
    delta = F.softplus(dt + bias[:, None])
    h = torch.zeros(x.shape[0], x.shape[1], a.shape[1], dtype=x.dtype)
    ys = []
    for t in range(x.shape[-1]):
        h = torch.exp(delta[..., t, None] * a) * h + (delta[..., t] * x[..., t])[..., None] * b[:, None, :, t]
        ys.append((h * c[:, None, :, t]).sum(-1))
    return (torch.stack(ys, -1) + x * d[:, None]) * F.silu(z)


@pytest.mark.parametrize("seq_len", [1, 5, 33])
def test_float64_matches_the_definition_tightly(seq_len):
    # transformers' reference casts B and x to float32 internally, so float64 is checked against the definition.
    inputs = make_inputs(7, seq_len, dtype=torch.float64)
    x, dt, a, b, c, d, z, bias = inputs
    out = selective_scan(x, dt, a, b, c, D=d, z=z, delta_bias=bias, delta_softplus=True, chunk_size=4)
    ref = naive_scan(*inputs)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert_close_grads(out, ref, inputs, torch.randn_like(out), rtol=1e-10, atol=1e-10)


def test_without_softplus_and_last_state():
    inputs = make_inputs(3, 9)
    inputs[1] = (torch.rand_like(inputs[1]) * 0.3).requires_grad_()  # a positive dt, used as is
    out, last = run(
        selective_scan, inputs, with_dz=True, softplus=False, return_last_state=True, chunk_size=2
    )
    ref, ref_last = run(REFERENCE, inputs, with_dz=True, softplus=False, return_last_state=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert last.shape == ref_last.shape == (3, 6, 4)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)


def test_no_grad_and_bfloat16_inputs():
    inputs = [t.detach() for t in make_inputs(4, 12)]
    with torch.no_grad():
        out = run(selective_scan, inputs, with_dz=True)
        ref = run(REFERENCE, inputs, with_dz=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    half = [t.to(torch.bfloat16) for t in inputs]
    out_bf16 = run(selective_scan, half, with_dz=True)
    assert out_bf16.dtype == torch.bfloat16  # state kept in float32, result cast back
    torch.testing.assert_close(out_bf16.float(), ref, rtol=0.05, atol=0.05)


def test_rejects_mismatched_shapes():
    x, dt, a, b, c, *_ = make_inputs(0, 5)
    with pytest.raises(ValueError, match="B/C"):
        selective_scan(x, dt, a, b[:, :, :4], c)
    with pytest.raises(ValueError, match="dt"):
        selective_scan(x, dt[:, :, :4], a, b, c)


def test_chunk_length_bounds():
    assert chunk_length(202, 64 * 16 * 128) == 4
    assert chunk_length(3, 1) == 3  # never longer than the sequence
    assert chunk_length(50, 10**9) == 1  # a huge state still advances one step at a time


def test_scratch_survives_inference_mode_and_threads():
    from concurrent.futures import ThreadPoolExecutor

    from probes.ssm.selective_scan import release_scratch

    release_scratch()
    inputs = make_inputs(5, 10)
    with torch.inference_mode():  # the first call allocates the cached scratch memory
        run(selective_scan, [t.detach() for t in inputs], with_dz=True)
    out = run(selective_scan, inputs, with_dz=True)
    ref = run(REFERENCE, inputs, with_dz=True)
    assert_close_grads(out, ref, inputs, torch.ones_like(out), rtol=1e-5, atol=1e-5)

    def one(seed):  # concurrent callers each get their own scratch memory
        xs = make_inputs(seed, 20)
        got = run(selective_scan, xs, with_dz=True)
        return float((got - run(REFERENCE, xs, with_dz=True)).detach().abs().max())

    with ThreadPoolExecutor(4) as pool:
        assert max(pool.map(one, range(8))) < 1e-4
