"""`probes.ssm.causal_conv.causal_conv1d` against transformers' PyTorch `causal_conv1d_fn` (F.conv1d)."""

from __future__ import annotations

import inspect

import pytest
import torch
import transformers.models.mamba.modeling_mamba as modeling_mamba

from probes.ssm.causal_conv import causal_conv1d

REFERENCE = inspect.unwrap(modeling_mamba.causal_conv1d_fn)


@pytest.mark.parametrize("seq_len", [1, 2, 3, 4, 7, 33])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("activation", ["silu", None])
def test_matches_conv1d_reference(seq_len, bias, channels_last, activation):
    g = torch.Generator().manual_seed(seq_len)
    if channels_last:  # the layout the Mamba mixer hands over: a transposed view of [batch, T, channels]
        x = torch.randn(2, seq_len, 5, generator=g, dtype=torch.float64).transpose(1, 2)
    else:
        x = torch.randn(2, 5, seq_len, generator=g, dtype=torch.float64)
    x.requires_grad_()
    w = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    out = causal_conv1d(x, w, b, activation=activation)
    ref = REFERENCE(x, w, b, activation=activation)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    inputs = [x, w] + ([b] if bias else [])
    grad_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    for got, want in zip(
        torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, inputs, grad_out), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_rejects_packed_sequences_and_unknown_activation():
    x, w = torch.randn(1, 3, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="seq_idx"):
        causal_conv1d(x, w, seq_idx=torch.zeros(1, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, w, activation="gelu")
    assert causal_conv1d(x, w, seq_idx=None).shape == x.shape  # unset kernel options are fine


@pytest.mark.parametrize("seq_len", [1, 3, 33])
def test_cudnn_path_matches_the_shift_version(seq_len):
    """The CUDA path (`F.conv1d(groups=channels)`, cuDNN on a GPU) computes the same causal convolution; here
    it runs on the CPU device, and on CUDA when one is present."""
    from probes.ssm.cudnn_conv import causal_conv1d_cudnn

    g = torch.Generator().manual_seed(seq_len)
    x = torch.randn(2, seq_len, 6, generator=g, dtype=torch.float64).transpose(1, 2).requires_grad_()
    w = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    want = causal_conv1d(x, w, b, activation="silu")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args = [t.detach().to(device).requires_grad_() for t in (x, w, b)]
    got = causal_conv1d_cudnn(*args, activation="silu")
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for mine, ref in zip(torch.autograd.grad(got, args, grad_out.to(device)),
                         torch.autograd.grad(want, [x, w, b], grad_out), strict=True):
        torch.testing.assert_close(mine.cpu(), ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d_cudnn(*args, activation="relu")
