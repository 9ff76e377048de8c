"""Backbones: presets, local checkpoints by path for every family, clear errors, target-only logits."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Mamba2Config

from probes.errors import UserError
from probes.models.registry import load_backbone
from probes.train.forward import full_logits_at_targets, target_logits

FAMILIES = {"pythia-tiny": "gpt_neox", "mamba-tiny": "mamba", "hybrid-tiny": "hybrid"}


@pytest.mark.parametrize("preset,family", FAMILIES.items())
def test_local_checkpoint_loads_by_path(tmp_path, preset, family):
    src = load_backbone(preset, seed=7).model
    src.save_pretrained(tmp_path / "ckpt")
    loaded = load_backbone(str(tmp_path / "ckpt"))
    assert loaded.family == family
    ids = torch.randint(0, 500, (2, 9))
    with torch.no_grad():
        assert torch.allclose(src(input_ids=ids).logits, loaded.model(input_ids=ids).logits, atol=1e-5)


def test_mamba2_checkpoint_loads_by_path(tmp_path):
    cfg = Mamba2Config(vocab_size=256, hidden_size=64, num_hidden_layers=1, state_size=16, expand=2,
                       head_dim=16, num_heads=8, n_groups=1, chunk_size=16)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "m2")
    bb = load_backbone(str(tmp_path / "m2"))
    assert bb.family == "mamba2" and bb.vocab_size == 256


def test_unknown_model_is_one_clear_line():
    with pytest.raises(UserError) as err:
        load_backbone("definitely-not-a-model-xyz")
    assert "\n" not in str(err.value) and "preset" in str(err.value)


def test_directory_without_config(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_backbone(str(tmp_path))


@pytest.mark.parametrize("preset", list(FAMILIES))
def test_target_logits_match_full_logits(preset):
    model = load_backbone(preset).model.eval()
    ids = torch.randint(0, 500, (3, 11))
    pos = torch.tensor([[10], [4], [0]])
    with torch.no_grad():
        fast = target_logits(model, ids, pos)
        full = full_logits_at_targets(model, ids, pos)
    assert fast.shape == (3, 1, model.get_output_embeddings().weight.shape[0])
    assert torch.allclose(fast, full, atol=1e-5)
