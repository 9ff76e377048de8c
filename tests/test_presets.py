"""Offline presets: every one builds, trains a step and grows its vocabulary; the hybrid init fix holds."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from probes.models.presets import PRESETS, TINY_VOCAB, _hybrid, init_mamba1_mixers
from probes.models.registry import load_backbone
from probes.models.resize import add_tokens, outputs_tied
from probes.ssm.patch import enable_fast_path
from probes.train.forward import target_logits

TINY = [name for name in PRESETS if name.endswith("-tiny")]
FAMILIES = {"pythia-tiny": "gpt_neox", "mamba-tiny": "mamba", "mamba2-tiny": "mamba2", "hybrid-tiny": "hybrid",
            "zamba2-tiny": "hybrid"}


def test_every_tiny_preset_is_listed() -> None:
    assert sorted(TINY) == sorted(FAMILIES)


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_builds_resizes_and_trains_one_step(name: str) -> None:
    bb = load_backbone(name, seed=0)
    assert bb.family == FAMILIES[name]
    assert bb.vocab_size == TINY_VOCAB
    model = bb.model
    first = add_tokens(model, 12, "mean", seed=0)
    assert first == TINY_VOCAB
    assert model.get_input_embeddings().weight.shape[0] == TINY_VOCAB + 12
    assert model.get_output_embeddings().weight.shape[0] == TINY_VOCAB + 12
    enable_fast_path(model)
    model.train()
    x = torch.randint(0, TINY_VOCAB + 12, (4, 11))
    labels = torch.randint(0, TINY_VOCAB, (4,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits = target_logits(model, x, torch.full((4, 1), 10))[:, 0]
    loss = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) >= len(before) // 2, f"{name}: only {changed} moved"
    assert model.get_input_embeddings().weight.grad[first:].abs().sum() > 0  # new rows get gradient


def test_presets_are_seeded() -> None:
    a = load_backbone("hybrid-tiny", seed=0).model.state_dict()
    b = load_backbone("hybrid-tiny", seed=0).model.state_dict()
    c = load_backbone("hybrid-tiny", seed=1).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _delta_at_init(model: torch.nn.Module) -> torch.Tensor:
    mixer = model.model.layers[0].mamba
    return torch.nn.functional.softplus(mixer.dt_proj.bias.detach())


def test_hybrid_tiny_gets_mambas_dt_init_not_transformers_generic_one() -> None:
    """transformers' Jamba init leaves Δ = softplus(0) ≈ 0.69 everywhere (the state forgets within a few tokens);
    the preset draws Δ log-uniformly in [1e-3, 0.1] as Mamba does."""
    torch.manual_seed(0)
    generic = AutoModelForCausalLM.from_config(_hybrid(64, 2, TINY_VOCAB))
    assert torch.allclose(_delta_at_init(generic), torch.full((128,), math.log(2.0)))
    fixed = load_backbone("hybrid-tiny", seed=0).model
    delta = _delta_at_init(fixed)
    assert 1e-3 * 0.99 <= float(delta.min()) and float(delta.max()) <= 0.1 * 1.01
    assert float(delta.std()) > 0.01  # spread over the range, not one value
    assert init_mamba1_mixers(load_backbone("pythia-tiny").model) == 0  # nothing to do without Jamba mixers


def test_hybrid_layer_order_and_no_router() -> None:
    layers = [type(m).__name__ for m in load_backbone("hybrid-tiny").model.model.layers]
    assert layers == ["JambaMambaDecoderLayer", "JambaAttentionDecoderLayer"]
    model = load_backbone("hybrid-tiny").model
    assert not any(type(m).__name__.endswith("Router") for m in model.modules())  # num_experts=1: plain MLP
    assert not outputs_tied(model)


def test_hybrid_fast_scan_matches_transformers_reference() -> None:
    model = load_backbone("hybrid-tiny", seed=3).model.eval()
    x = torch.randint(0, TINY_VOCAB, (3, 13))
    with torch.no_grad():
        ref = model(input_ids=x).logits
        enable_fast_path(model)
        fast = model(input_ids=x).logits
    assert torch.allclose(ref, fast, atol=1e-5)


def test_zamba2_tiny_attention_has_rotary_and_mamba2_chunk_is_small() -> None:
    z = load_backbone("zamba2-tiny").model
    assert z.config.use_mem_rope
    assert [type(m).__name__ for m in z.model.layers] == ["Zamba2MambaDecoderLayer", "Zamba2HybridLayer"]
    m2 = load_backbone("mamba2-tiny").model
    assert m2.config.chunk_size == 16 and z.config.chunk_size == 16


@pytest.mark.parametrize(("name", "rotary_dims"), [("pythia-tiny", 16), ("pythia-tiny-rot8", 8), ("pythia-tiny-rot4", 4)])
def test_pythia_tiny_rotary_dims(name: str, rotary_dims: int) -> None:
    """README "Presets": pythia-tiny rotates its whole 16-dim heads; -rot8/-rot4 are the ablation's."""
    model = load_backbone(name).model
    head = model.config.hidden_size // model.config.num_attention_heads
    assert head == 16 and model.gpt_neox.rotary_emb.inv_freq.numel() * 2 == rotary_dims


@pytest.mark.parametrize(("name", "state"), [("mamba-tiny", 16), ("mamba-tiny-s4", 4), ("mamba-tiny-s1", 1)])
def test_mamba_tiny_state_sizes(name: str, state: int) -> None:
    model = load_backbone(name).model
    assert model.config.state_size == state and model.backbone.layers[0].mixer.A_log.shape[-1] == state
