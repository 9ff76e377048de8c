"""Embedding resize: old rows bit-identical, new rows initialised as declared, tied/untied handled."""

import pytest
import torch

from probes.errors import UserError
from probes.models.registry import load_backbone
from probes.models.resize import STRATEGIES, add_tokens, outputs_tied


@pytest.mark.parametrize("preset", ["pythia-tiny", "mamba-tiny", "hybrid-tiny"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_old_rows_identical_and_new_rows_declared(preset, strategy):
    model = load_backbone(preset).model
    tied = outputs_tied(model)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    first = add_tokens(model, 40, strategy, seed=3)
    w_in = model.get_input_embeddings().weight.detach()
    w_out = model.get_output_embeddings().weight.detach()
    assert first == old_in.shape[0] and w_in.shape[0] == first + 40
    assert torch.equal(w_in[:first], old_in)
    assert torch.equal(w_out[:first], old_out)
    assert outputs_tied(model) == tied
    new = w_in[first:]
    if strategy == "mean":
        assert torch.allclose(new.mean(0), old_in.mean(0), atol=0.01)
        assert float((new - old_in.mean(0)).std()) < 0.05 * float(old_in.std())
    elif strategy == "gaussian":  # N(mean, per-dim std) of the existing rows
        assert abs(float(new.std()) - float(old_in.std(0).mean())) < 0.25 * float(old_in.std())
        assert abs(float((new - old_in.mean(0)).mean())) < 0.2 * float(old_in.std())
    elif strategy == "normal":
        std = model.config.initializer_range
        assert abs(float(new.std()) - std) < 0.25 * std
        assert abs(float(new.mean())) < 0.2 * std
    else:  # sample: each new row is a copy of an existing row
        equal_rows = (new[:, None, :] == old_in[None, :, :]).all(dim=-1)
        assert bool(equal_rows.any(dim=1).all())
    if not tied:
        assert not torch.equal(w_out[first:], new)  # drawn separately for the output head


def test_init_seed_changes_only_new_rows():
    a, b = load_backbone("pythia-tiny").model, load_backbone("pythia-tiny").model
    add_tokens(a, 5, "mean", seed=0)
    add_tokens(b, 5, "mean", seed=1)
    wa, wb = a.get_input_embeddings().weight, b.get_input_embeddings().weight
    assert torch.equal(wa[:-5], wb[:-5]) and not torch.equal(wa[-5:], wb[-5:])
    c = load_backbone("pythia-tiny").model
    add_tokens(c, 5, "mean", seed=0)
    assert torch.equal(wa, c.get_input_embeddings().weight)


def test_unknown_strategy():
    with pytest.raises(UserError, match="unknown init strategy"):
        add_tokens(load_backbone("pythia-tiny").model, 3, "zeros")


def test_init_spread_mean_seeds_are_near_identical_gaussian_seeds_differ() -> None:
    """README "Initialisations": three `mean` seeds start almost at the same rows, `gaussian` ones do not."""
    from probes.models.resize import init_spread

    old = torch.randn(512, 64, generator=torch.Generator().manual_seed(0)) * 0.02 + 0.01
    assert init_spread(old, 21, "mean", (0, 1, 2)) < 0.1
    assert 1.2 < init_spread(old, 21, "gaussian", (0, 1, 2)) < 1.7  # two independent draws: about sqrt(2)
    assert init_spread(old, 21, "gaussian", (0, 0)) == 0.0  # same seed, same rows
