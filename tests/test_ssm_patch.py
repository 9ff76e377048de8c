"""The per-model dispatch: which scan path runs, and whole models on the fast path equal the reference."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers.models.mamba.modeling_mamba as modeling_mamba
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module
from transformers import (
    FalconMambaConfig,
    FalconMambaForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    JambaConfig,
    JambaForCausalLM,
    Mamba2Config,
    Mamba2ForCausalLM,
    MambaConfig,
    MambaForCausalLM,
)

import probes.ssm.mixers as mixers
import probes.ssm.patch as patch
from probes.ssm import selfcheck
from probes.ssm.patch import (
    FAST_SCAN,
    MAMBA_SSM,
    SCAN_CALLS,
    SEQUENTIAL,
    TORCH_SSD,
    detect_mamba_path,
    enable_fast_path,
)

VOCAB = 64


@pytest.fixture(autouse=True)
def _fresh_path_choices(monkeypatch):
    """Path choices are cached per process and device; each test starts without them and without a forced path."""
    monkeypatch.delenv(selfcheck.ENV_VAR, raising=False)
    selfcheck.clear_cache()
    yield
    selfcheck.clear_cache()


def tiny_mamba(seed: int = 0, layers: int = 2) -> MambaForCausalLM:
    torch.manual_seed(seed)
    return MambaForCausalLM(
        MambaConfig(
            vocab_size=VOCAB, hidden_size=16, state_size=4, num_hidden_layers=layers, expand=2, conv_kernel=4
        )
    )


def tiny_jamba(seed: int = 0) -> JambaForCausalLM:
    torch.manual_seed(seed)
    return JambaForCausalLM(
        JambaConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            attn_layer_period=2,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=1,
            num_experts=2,
            num_experts_per_tok=1,
            mamba_d_state=4,
            mamba_d_conv=4,
            mamba_expand=2,
            mamba_dt_rank=2,
        )
    )


def tiny_falcon_mamba(seed: int = 0) -> FalconMambaForCausalLM:
    torch.manual_seed(seed)
    return FalconMambaForCausalLM(
        FalconMambaConfig(vocab_size=VOCAB, hidden_size=16, state_size=4, num_hidden_layers=2)
    )


def tiny_neox() -> GPTNeoXForCausalLM:
    return GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )


def loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters()}


def assert_same_training_signal(reference, fast, ids):
    logits_ref, grads_ref = loss_and_grads(reference, ids)
    logits_fast, grads_fast = loss_and_grads(fast, ids)
    torch.testing.assert_close(logits_fast, logits_ref, rtol=1e-5, atol=1e-5)
    assert grads_ref.keys() == grads_fast.keys()
    for name, want in grads_ref.items():
        got = grads_fast[name]
        if want is None:
            assert got is None or torch.count_nonzero(got) == 0, name
            continue
        torch.testing.assert_close(
            got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()) + 1e-9, msg=f"gradient of {name}"
        )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("seq_len", [1, 7, 33])
def test_mamba_model_equals_reference(seed, seq_len):
    reference = tiny_mamba(seed)
    fast = copy.deepcopy(reference)
    assert enable_fast_path(fast) == FAST_SCAN
    ids = torch.randint(0, VOCAB, (3, seq_len), generator=torch.Generator().manual_seed(seed))
    before = SCAN_CALLS[FAST_SCAN]
    assert_same_training_signal(reference, fast, ids)
    assert SCAN_CALLS[FAST_SCAN] - before == 2  # one scan per layer


@pytest.mark.parametrize("build", [tiny_jamba, tiny_falcon_mamba])
def test_hybrid_and_variant_mixers_equal_reference(build):
    reference = build()
    fast = copy.deepcopy(reference)
    assert enable_fast_path(fast) == FAST_SCAN
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(3))
    before = SCAN_CALLS[FAST_SCAN]
    assert_same_training_signal(reference, fast, ids)
    assert SCAN_CALLS[FAST_SCAN] > before


def forbid_transformers_scan(monkeypatch):
    """Make transformers' own selective scan raise, through whichever form this release gives it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("transformers' sequential selective scan was called")

    fn = modeling_mamba.mamba_selective_scan
    if isinstance(fn, torch.nn.Module):  # a kernelized function: a mixer's private wrapper runs transformers'
        dispatch = type(fn).forward  # path through the class forward; the module-level instance only routes

        def guarded(self, *args, **kwargs):
            return dispatch(self, *args, **kwargs) if self is fn else forbidden()

        monkeypatch.setattr(type(fn), "forward", guarded)
    else:  # a module function: replaced before hooking, so the hooked mixers must not look it up at all
        monkeypatch.setattr(modeling_mamba, "mamba_selective_scan", forbidden)


def test_train_step_never_reaches_the_sequential_loop(monkeypatch):
    forbid_transformers_scan(monkeypatch)
    model = tiny_mamba(layers=3)
    assert enable_fast_path(model) == FAST_SCAN
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, VOCAB, (4, 12), generator=torch.Generator().manual_seed(0))
    before = SCAN_CALLS[FAST_SCAN]
    losses = []
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert SCAN_CALLS[FAST_SCAN] - before == 9
    assert losses[-1] < losses[0]
    # The unhooked model does reach transformers' function (so the check above can fail).
    enable_fast_path(model, enabled=False)
    with pytest.raises(AssertionError, match="sequential"):
        model(input_ids=ids)


def test_generation_with_cache_matches_reference():
    reference = tiny_mamba(5).eval()
    fast = copy.deepcopy(reference)
    enable_fast_path(fast)
    prompt = torch.randint(1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    kwargs = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    before = SCAN_CALLS[FAST_SCAN]
    assert torch.equal(fast.generate(prompt, **kwargs), reference.generate(prompt, **kwargs))
    assert SCAN_CALLS[FAST_SCAN] > before  # the prefill ran through the fast scan


def test_path_names_and_toggling():
    assert detect_mamba_path(tiny_neox()) is None
    assert enable_fast_path(tiny_neox()) is None
    model = tiny_mamba()
    assert detect_mamba_path(model) == SEQUENTIAL
    assert enable_fast_path(model) == FAST_SCAN
    assert enable_fast_path(model) == FAST_SCAN  # idempotent
    assert enable_fast_path(model, enabled=False) == SEQUENTIAL
    assert all("forward" not in m.__dict__ for m in model.modules())  # nothing left behind
    other = tiny_mamba()
    enable_fast_path(model)
    assert detect_mamba_path(other) == SEQUENTIAL  # per instance, never global


def test_mamba2_keeps_transformers_torch_path():
    torch.manual_seed(0)
    model = Mamba2ForCausalLM(
        Mamba2Config(
            vocab_size=VOCAB,
            hidden_size=16,
            state_size=4,
            num_hidden_layers=1,
            expand=2,
            num_heads=4,
            head_dim=8,
            n_groups=1,
            chunk_size=8,
        )
    )
    assert detect_mamba_path(model) == TORCH_SSD
    assert enable_fast_path(model) == TORCH_SSD
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_kernel_choice_depends_on_device(monkeypatch):
    monkeypatch.setattr(mixers, "mamba_ssm_importable", lambda: True)
    model = tiny_mamba()
    enable_fast_path(model)
    assert detect_mamba_path(model) == FAST_SCAN  # kernels importable, but the model is on the CPU
    before = SCAN_CALLS[FAST_SCAN]
    model(input_ids=torch.zeros(1, 3, dtype=torch.long))
    assert SCAN_CALLS[FAST_SCAN] - before == 2  # CPU tensors never go to the CUDA kernels
    monkeypatch.setattr(patch, "_model_device", lambda model: torch.device("cuda"))
    assert detect_mamba_path(model) == MAMBA_SSM
    assert detect_mamba_path(tiny_mamba()) == MAMBA_SSM


def test_works_under_accelerate_hooks_and_deepcopy():
    model = tiny_mamba()
    mixer = model.backbone.layers[0].mixer
    add_hook_to_module(mixer, ModelHook())
    enable_fast_path(model)
    copied = copy.deepcopy(model)
    copied_mixer = copied.backbone.layers[1].mixer
    assert copied_mixer.forward.__self__ is copied_mixer  # the copy's hook is bound to the copy
    for m in (model, copied):
        before = SCAN_CALLS[FAST_SCAN]
        m(input_ids=torch.zeros(1, 4, dtype=torch.long))
        assert SCAN_CALLS[FAST_SCAN] - before == 2
    remove_hook_from_module(mixer)
    assert detect_mamba_path(model) == FAST_SCAN  # accelerate put our forward back in place
    enable_fast_path(model, enabled=False)
    assert detect_mamba_path(model) == SEQUENTIAL


def test_packed_sequence_options_are_refused():
    x = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="cu_seqlens"):
        patch._fast_selective_scan(
            x,
            x,
            torch.zeros(2, 1),
            torch.zeros(1, 1, 3),
            torch.zeros(1, 1, 3),
            path=FAST_SCAN,
            cu_seqlens=torch.tensor([0, 3]),
        )


class SubclassedMixer(modeling_mamba.MambaMixer):
    """A user's subclass of transformers' mixer (defined outside transformers): found by type all the same."""


def test_mixers_are_found_by_type_and_hooked_through_the_installed_mechanism():
    model = tiny_mamba()
    layer = model.backbone.layers[0]
    layer.mixer.__class__ = SubclassedMixer
    assert enable_fast_path(model) == FAST_SCAN
    hooks = [m.__dict__[patch._HOOK] for m in mixers.mamba1_mixers(model)]
    assert len(hooks) == 2
    kernelized = isinstance(modeling_mamba.mamba_selective_scan, torch.nn.Module)
    assert {h.mechanism for h in hooks} == {"kernelized" if kernelized else "module-functions"}
    before = SCAN_CALLS[FAST_SCAN]
    model(input_ids=torch.zeros(1, 5, dtype=torch.long))
    assert SCAN_CALLS[FAST_SCAN] - before == 2
    assert patch.mamba_path_note(model) is None


def test_a_mixer_that_cannot_be_hooked_is_announced_and_recorded(monkeypatch, capsys):
    import transformers

    model = tiny_mamba()
    monkeypatch.delattr(modeling_mamba, "mamba_selective_scan")  # a release that renamed its scan
    patch._WARNED.clear()
    assert enable_fast_path(model) == SEQUENTIAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ")
    assert f"transformers {transformers.__version__}" in err[0] and "mamba_path transformers-sequential" in err[0]
    note = patch.mamba_path_note(model)
    assert note and "cannot install the fast Mamba scan" in note


def test_unrecognised_ssm_mixers_are_named():
    class HomeMadeMixer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A_log = torch.nn.Parameter(torch.zeros(4, 2))

    model = torch.nn.Sequential(HomeMadeMixer())
    enable_fast_path(model)
    assert "HomeMadeMixer" in (patch.mamba_path_note(model) or "")


@pytest.mark.parametrize("preset", ["mamba-tiny", "hybrid-tiny", "mamba2-tiny", "zamba2-tiny"])
def test_every_mamba_family_preset_records_a_fast_path_on_cpu(preset, tmp_path):
    """What the trainer records for each SSM preset on a CPU: our scan for Mamba-1 mixers, transformers'
    chunked SSD for Mamba-2 ones; never the sequential loop, never a note."""
    from probes.models.registry import load_backbone
    from probes.train.loop import enable_mamba_fast_path

    model = load_backbone(preset).model
    path = enable_mamba_fast_path(model)
    assert path == (TORCH_SSD if preset in ("mamba2-tiny", "zamba2-tiny") else FAST_SCAN)
    assert patch.mamba_path_note(model) is None
