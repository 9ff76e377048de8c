"""The Triton selective scan against a plain sequential reference: values and gradients of every input.

Without a GPU the kernels run through Triton's interpreter (`TRITON_INTERPRET=1`, set per test before the
kernels are first built); with one they are compiled and run on CUDA. Shapes are tiny because the
interpreter executes every program of the grid in Python.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import MambaConfig, MambaForCausalLM

import probes.ssm.mixers as mixers
import probes.ssm.patch as patch
import probes.ssm.triton_scan as ts
from probes.ssm import selfcheck
from probes.ssm.patch import SCAN_CALLS, TRITON_SCAN, detect_mamba_path, enable_fast_path

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
FP32_EPS = float(torch.finfo(torch.float32).eps)

pytestmark = pytest.mark.skipif(not ts.triton_available(), reason="triton is not installed")


@pytest.fixture(autouse=True)
def _interpret_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(selfcheck.ENV_VAR, raising=False)
    selfcheck.clear_cache()


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence written out step by step (float64 in, float64 out): no chunks, no scan tricks."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = torch.nn.functional.softplus(delta)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * torch.nn.functional.silu(z)
    return y, h


def make_inputs(batch: int, dim: int, n: int, length: int, opts: str, seed: int = 0) -> dict[str, Any]:
    """float64 inputs in Mamba's ranges (A < 0, delta around softplus' working range)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    x = {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length, scale=0.5) if "s" in opts else torch.rand(batch, dim, length, generator=g,
                                                                                   dtype=torch.float64) * 0.5,
        "A": -torch.rand(dim, n, generator=g, dtype=torch.float64) * 2 - 0.05,
        "B": r(batch, n, length),
        "C": r(batch, n, length),
        "D": r(dim) if "D" in opts else None,
        "z": r(batch, dim, length) if "z" in opts else None,
        "delta_bias": r(dim, scale=0.3) if "b" in opts else None,
    }
    return x


def run_both(x: dict[str, Any], opts: str, dtype: torch.dtype, **config: Any):
    """(ours: y, last, grads), (reference: y, last, grads) for the same upstream gradient."""
    softplus = "s" in opts
    ours_in = {k: (None if v is None else v.to(DEVICE, dtype).requires_grad_()) for k, v in x.items()}
    ref_in = {k: (None if v is None else ours_in[k].detach().double().cpu().requires_grad_())
              for k, v in x.items()}
    y, last = ts.selective_scan(**ours_in, delta_softplus=softplus, return_last_state=True, **config)
    y_ref, last_ref = reference_scan(**ref_in, delta_softplus=softplus)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    present = [k for k in NAMES if x[k] is not None]
    grads = torch.autograd.grad(y, [ours_in[k] for k in present], gy.to(DEVICE, y.dtype))
    grads_ref = torch.autograd.grad(y_ref, [ref_in[k] for k in present], gy)
    assert y.dtype == dtype and last.dtype == torch.float32 and last.shape == last_ref.shape
    ours = (y, last, dict(zip(present, grads, strict=True)))
    return ours, (y_ref, last_ref, dict(zip(present, grads_ref, strict=True)))


def assert_close(got: torch.Tensor, want: torch.Tensor, rel: float, what: str) -> None:
    """Error relative to the reference's scale (max |want|), so near-zero entries do not dominate. A reference
    that is exactly zero (dA at L=1: the state before the first step is 0) can be matched only to float32
    rounding of O(1) terms: compiled on a GPU that leaves ~5e-9 (H200), hence the absolute floor of float32's
    machine epsilon."""
    want = want.detach()
    scale = float(want.abs().max())
    err = float((got.detach().double().cpu() - want).abs().max())
    assert err <= rel * scale + FP32_EPS, f"{what}: max error {err:.3g} > {rel:g} x scale {scale:.3g} + {FP32_EPS:.1e}"


def check(x: dict[str, Any], opts: str, dtype: torch.dtype, rel: float, **config: Any) -> None:
    (y, last, grads), (y_ref, last_ref, grads_ref) = run_both(x, opts, dtype, **config)
    assert_close(y, y_ref, rel, "y")
    assert_close(last, last_ref, rel, "last state")
    assert grads.keys() == grads_ref.keys()
    for name, want in grads_ref.items():
        assert grads[name].shape == want.shape and grads[name].dtype == dtype
        assert_close(grads[name], want, rel, f"d{name}")


# (length, batch, d_inner, N, options, block_d, chunk): options D = skip term, z = gate, b = delta_bias,
# s = softplus. d_inner is never a multiple of block_d, so every grid has a partial channel block.
FP32_CASES = [
    (1, 2, 5, 4, "Dzbs", None, None),
    (2, 2, 5, 3, "", None, None),
    (37, 2, 7, 4, "Dzbs", 4, 16),  # three chunks, the last one partial
    (37, 1, 7, 4, "D", 2, 16),
    (37, 1, 6, 4, "z", 4, None),
    (37, 1, 5, 2, "bs", 4, 32),
    (203, 1, 5, 4, "Dzbs", None, None),  # default launch config: several chunks
    (1000, 1, 3, 2, "Dzbs", 2, None),
]


@pytest.mark.parametrize(("length", "batch", "dim", "n", "opts", "block_d", "chunk"), FP32_CASES,
                         ids=[f"L{c[0]}-{c[4] or 'plain'}" for c in FP32_CASES])
def test_fp32_values_and_gradients(length, batch, dim, n, opts, block_d, chunk) -> None:
    x = make_inputs(batch, dim, n, length, opts)
    check(x, opts, torch.float32, 2e-5 if length < 1000 else 1e-4, block_d=block_d, chunk=chunk)


@pytest.mark.parametrize(("length", "opts"), [(2, "Dzbs"), (37, "Dzbs"), (203, "zs")])
def test_bf16_inputs(length, opts) -> None:
    """bf16 in, fp32 inside: the only errors are the bf16 roundings of inputs, outputs and gradients."""
    x = make_inputs(1, 5, 4, length, opts, seed=2)
    check(x, opts, torch.bfloat16, 3e-2, block_d=4, chunk=16 if length > 16 else None)


def test_backward_groups_split_channel_blocks() -> None:
    """Several backward programs per sequence, each looping over channel blocks (one past the end)."""
    x = make_inputs(2, 7, 3, 21, "Dzbs", seed=3)
    for groups in (1, 3):
        check(x, "Dzbs", torch.float32, 2e-5, block_d=2, chunk=16, groups=groups)


def test_gradients_are_bitwise_deterministic() -> None:
    x = make_inputs(2, 5, 4, 40, "Dzbs", seed=4)
    first = run_both(x, "Dzbs", torch.float32, block_d=2, chunk=16, groups=2)[0]
    second = run_both(x, "Dzbs", torch.float32, block_d=2, chunk=16, groups=2)[0]
    assert torch.equal(first[0], second[0])
    for name in first[2]:
        assert torch.equal(first[2][name], second[2][name]), name


def test_forward_without_grad_and_without_last_state() -> None:
    x = make_inputs(1, 5, 4, 30, "Dz", seed=5)
    args = {k: (None if v is None else v.to(DEVICE, torch.float32)) for k, v in x.items()}
    with torch.no_grad():
        y = ts.selective_scan(**args, chunk=16)
    y_ref, _ = reference_scan(**x)
    assert isinstance(y, torch.Tensor)
    assert_close(y, y_ref, 2e-5, "y")


def test_bad_shapes_and_missing_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    x = {k: (None if v is None else v.float()) for k, v in make_inputs(1, 4, 2, 5, "").items()}
    with pytest.raises(ValueError, match="B/C"):
        ts.selective_scan(**{**x, "B": x["B"][:, :, :3]})
    with pytest.raises(ValueError, match="powers of 2"):
        ts.selective_scan(**x, block_d=3)
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match="TRITON_INTERPRET"):
            ts.selective_scan(**x)


def tiny_mamba(seed: int = 0) -> MambaForCausalLM:
    torch.manual_seed(seed)
    return MambaForCausalLM(
        MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=4)
    )


def test_whole_mamba_through_triton_matches_transformers_reference() -> None:
    """Logits and every parameter gradient of a 2-layer Mamba: Triton path vs transformers' own loop."""
    reference = tiny_mamba().to(DEVICE)
    ours = copy.deepcopy(reference)
    assert enable_fast_path(ours, scan=TRITON_SCAN) == TRITON_SCAN
    ids = torch.randint(0, 64, (2, 13), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    before = SCAN_CALLS[TRITON_SCAN]
    results = []
    for model in (reference, ours):
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        results.append((out.logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    assert SCAN_CALLS[TRITON_SCAN] - before == 2  # one scan per layer went through the Triton kernels
    (logits_ref, grads_ref), (logits, grads) = results
    torch.testing.assert_close(logits, logits_ref, rtol=1e-5, atol=1e-5)
    for name, want in grads_ref.items():
        torch.testing.assert_close(grads[name], want, rtol=1e-4, atol=1e-5 * float(want.abs().max()) + 1e-9,
                                   msg=f"gradient of {name}")


@pytest.mark.parametrize("build", ["tiny_jamba", "tiny_falcon_mamba"])
def test_other_mamba1_mixers_through_triton(build: str) -> None:
    """Jamba's and Falcon-Mamba's Mamba-1 mixers (RMS-normed B, C, dt in Falcon) on the Triton scan."""
    import test_ssm_patch

    reference = getattr(test_ssm_patch, build)().to(DEVICE)
    ours = copy.deepcopy(reference)
    assert enable_fast_path(ours, scan=TRITON_SCAN) == TRITON_SCAN
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    before = SCAN_CALLS[TRITON_SCAN]
    test_ssm_patch.assert_same_training_signal(reference, ours, ids)
    assert SCAN_CALLS[TRITON_SCAN] > before


def test_forcing_a_scan_is_per_model_and_reversible() -> None:
    model = tiny_mamba()
    assert enable_fast_path(model, scan=TRITON_SCAN) == TRITON_SCAN
    assert enable_fast_path(model) == "probes-fast-scan"  # the model is on the CPU: our chunked scan
    with pytest.raises(ValueError, match="scan must be"):
        enable_fast_path(model, scan="mambapy")


def test_cuda_without_mamba_ssm_picks_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatch decision, on any machine: a CUDA model without importable kernels runs the Triton scan."""
    monkeypatch.setattr(mixers, "mamba_ssm_importable", lambda: False)
    monkeypatch.setattr(selfcheck, "check_path", lambda path, device: selfcheck.PathCheck(path, True, None, 0.0))
    model = tiny_mamba()
    enable_fast_path(model)
    monkeypatch.setattr(patch, "_model_device", lambda model: torch.device("cuda"))
    assert detect_mamba_path(model) == TRITON_SCAN
    selfcheck.clear_cache()
    monkeypatch.setattr(mixers, "mamba_ssm_importable", lambda: True)
    assert detect_mamba_path(model) == "mamba-ssm"


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_tiny_mamba_on_cuda_runs_triton_when_mamba_ssm_is_absent() -> None:
    import importlib.util

    if importlib.util.find_spec("mamba_ssm") is not None:
        pytest.skip("mamba-ssm is installed: its kernels take precedence")
    model = tiny_mamba().to(DEVICE)
    assert enable_fast_path(model) == TRITON_SCAN
    before = SCAN_CALLS[TRITON_SCAN]
    model(input_ids=torch.zeros(1, 5, dtype=torch.long, device=DEVICE)).logits.sum().backward()
    assert SCAN_CALLS[TRITON_SCAN] - before == 2


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_mamba_small_layer_shape_on_cuda_matches_fast_scan() -> None:
    """A real layer's shape (mamba-130m: d_inner 1536, N 16) at L=202: Triton vs our chunked PyTorch scan."""
    from probes.ssm.selective_scan import selective_scan as chunked

    g = torch.Generator(device="cuda").manual_seed(0)
    b, d, n, length = 4, 1536, 16, 202
    x = {
        "u": torch.randn(b, d, length, device="cuda", generator=g),
        "delta": torch.randn(b, d, length, device="cuda", generator=g) * 0.5,
        "A": -torch.rand(d, n, device="cuda", generator=g) * 4 - 0.1,
        "B": torch.randn(b, n, length, device="cuda", generator=g),
        "C": torch.randn(b, n, length, device="cuda", generator=g),
        "D": torch.randn(d, device="cuda", generator=g),
        "z": torch.randn(b, d, length, device="cuda", generator=g),
        "delta_bias": torch.randn(d, device="cuda", generator=g) * 0.3,
    }
    results = []
    for fn in (ts.selective_scan, chunked):
        inputs = {k: v.clone().requires_grad_() for k, v in x.items()}
        y = fn(*(inputs[k] for k in NAMES), delta_softplus=True)  # positional: the two name `u` differently
        y.backward(torch.ones_like(y))
        results.append((y.detach(), {k: v.grad for k, v in inputs.items()}))
    (y, grads), (y_ref, grads_ref) = results
    assert_close(y, y_ref.double().cpu(), 1e-4, "y")
    for name in NAMES:
        assert_close(grads[name], grads_ref[name].double().cpu(), 1e-3, f"d{name}")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_backward_memory_grows_like_the_inputs_on_cuda() -> None:
    """mamba-1.4b's layer shape, B=64, L=200, bf16: fwd+bwd peak stays near the inputs' size, far below the
    batch·d_inner·N·L float32 states (3.4 GB) a materialising scan would hold."""
    b, d, n, length = 64, 4096, 16, 200
    kw = {"device": "cuda", "dtype": torch.bfloat16}
    u, delta, z = (torch.randn(b, d, length, **kw).requires_grad_() for _ in range(3))
    bmat, cmat = (torch.randn(b, n, length, **kw).requires_grad_() for _ in range(2))
    A = (-torch.rand(d, n, device="cuda") - 0.1).requires_grad_()
    D = torch.randn(d, device="cuda").requires_grad_()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y = ts.selective_scan(u, delta, A, bmat, cmat, D, z, delta_softplus=True)
    y.backward(torch.ones_like(y))
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    states = b * d * n * length * 4
    assert extra < states / 3, f"scan fwd+bwd used {extra / 1e9:.2f} GB above its inputs"


def _compile_for_sm90(kernel: Any, constexprs: dict[str, Any], num_warps: int) -> Any:
    """Compile a kernel to PTX for an H100 (sm_90) with no GPU present: Triton's front end and LLVM only."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fp32 = {"A_ptr", "D_ptr", "bias_ptr", "ckpt_ptr", "last_ptr", "dA_ptr", "dD_ptr", "dbias_ptr", "dB_ptr", "dC_ptr"}
    signature = {
        name: "constexpr" if name in constexprs else ("*fp32" if name in fp32 else "*bf16")
        if name.endswith("_ptr") else "i32"
        for name in kernel.arg_names
    }
    index = {(kernel.arg_names.index(name),): value for name, value in constexprs.items()}
    source = ASTSource(kernel, signature, constexprs=index)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def test_kernels_compile_for_h100_without_spills(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter never runs Triton's compiler; this does (to PTX, then ptxas), on any machine.

    Catches what only compiled mode rejects (types, loop-carried shapes, constexpr use), and guards the
    register budget of the default launch configuration for Mamba's N=16 (no spills to local memory).
    """
    import os
    import re
    import subprocess

    import triton
    from triton.runtime.jit import JITFunction

    if not isinstance(triton.language.standard._sum_combine, JITFunction):
        pytest.skip("triton was imported in interpreter mode")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    kernels = ts._kernels()
    block_d, chunk = ts.launch_config(200, 4096, 16)
    flags = {"HAS_D": True, "HAS_Z": True, "HAS_BIAS": True, "SOFTPLUS": True}
    shape = {"BLOCK_D": block_d, "N_PAD": 16, "CHUNK": chunk}
    compiled = {
        "fwd": _compile_for_sm90(kernels["_fwd_kernel"], {**flags, "SAVE_CKPT": True, **shape}, ts.FWD_WARPS),
        "bwd": _compile_for_sm90(kernels["_bwd_kernel"], {**flags, **shape}, ts.BWD_WARPS),
    }
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    for name, kernel in compiled.items():
        ptx = kernel.asm["ptx"]
        assert ".visible .entry" in ptx, name
        if not os.access(ptxas, os.X_OK):
            continue
        result = subprocess.run([ptxas, "-arch=sm_90a", "-v", "-o", os.devnull, "-"], input=ptx, text=True,
                                capture_output=True, check=True)
        info = result.stdout + result.stderr
        spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", info)]
        registers = [int(x) for x in re.findall(r"Used (\d+) registers", info)]
        assert spills and max(spills) == 0, f"{name}: {info}"
        assert registers and max(registers) <= 255, f"{name}: {info}"
