"""Saliency top-k pruning and its cost benchmark."""

from __future__ import annotations

import pytest
import torch

from probes.errors import UserError
from probes.models.registry import load_config
from probes.vlm.eval.pruning_bench import lm_forward_flops, lm_sequence_length, pruning_cost
from probes.vlm.pruning import SaliencyPruner, patch_rows

torch.set_num_threads(1)


def _pruner_with_fixed_scores(dim: int, k: int) -> SaliencyPruner:
    """Scorer whose score is the first feature (hidden layer = identity-like through GELU on positives)."""
    pruner = SaliencyPruner(dim, k, hidden=1)
    with torch.no_grad():
        first, _, last = pruner.scorer
        first.weight.zero_()
        first.weight[0, 0] = 1.0
        first.bias.zero_()
        last.weight.fill_(1.0)
        last.bias.zero_()
    return pruner


def test_keeps_exactly_top_k_in_raster_order() -> None:
    pruner = _pruner_with_fixed_scores(4, 3)
    patches = torch.rand(2, 8, 4) * 0.1
    salient = [[6, 1, 4], [7, 0, 3]]
    for b, idx in enumerate(salient):
        for rank, j in enumerate(idx):
            patches[b, j, 0] = 5.0 - rank  # distinct, positive, larger than every other score
    kept, kept_index = pruner(patches)
    assert kept_index.tolist() == [[1, 4, 6], [0, 3, 7]]
    assert kept.shape == (2, 3, 4)
    for b in range(2):
        torch.testing.assert_close(kept[b], patches[b, kept_index[b]])  # forward values unchanged


def test_matches_brute_force_top_k_on_random_scores() -> None:
    torch.manual_seed(1)
    pruner = SaliencyPruner(16, 5)
    patches = torch.randn(3, 20, 16)
    _, kept_index = pruner(patches)
    scores = pruner.scores(patches).detach()
    for b in range(3):
        expected = sorted(sorted(range(20), key=lambda j: -float(scores[b, j]))[:5])
        assert kept_index[b].tolist() == expected


def test_scorer_receives_gradient() -> None:
    torch.manual_seed(0)
    pruner = SaliencyPruner(8, 3)
    kept, _ = pruner(torch.randn(2, 10, 8))
    kept.sum().backward()
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in pruner.parameters())


def test_keep_all_is_identity_and_too_many_raises() -> None:
    pruner = SaliencyPruner(4, 6)
    x = torch.randn(1, 6, 4)
    kept, idx = pruner(x)
    assert idx.tolist() == [list(range(6))]
    torch.testing.assert_close(kept, x)
    with pytest.raises(ValueError, match="cannot keep 6 of 5"):
        pruner(torch.randn(1, 5, 4))


def test_patch_rows() -> None:
    assert patch_rows(torch.tensor([[0, 3, 4, 11]]), 4).tolist() == [[0, 0, 1, 2]]


# --- cost ---------------------------------------------------------------------------------------------------


def test_sequence_length_counts_delimiters_and_separators() -> None:
    assert lm_sequence_length(576, 24, 10) == 10 + 576 + 2 + 23
    assert lm_sequence_length(3, 24, 0) == 3 + 2 + 2
    assert lm_sequence_length(1, 24, 0) == 3


def test_analytical_flops_gpt_neox_hand_computed() -> None:
    cfg = load_config("pythia-tiny")  # d=64, I=256, 2 layers, V=512
    t = 10
    linear = 2 * (6 * t * 64 * 64 + 2 * t * 64 * 64 + 4 * t * 64 * 256)
    attention = 2 * 4 * t * t * 64
    assert lm_forward_flops(cfg, t) == linear + attention + 2 * t * 64 * 512


def test_pruning_cost_rows_and_counter_agreement() -> None:
    rows = pruning_cost([2, 16], backbone="pythia-tiny", grid=4, text_tokens=4, repeats=1, warmup=0)
    assert [r["k"] for r in rows] == [2, 16]
    assert rows[0]["seq_len"] < rows[1]["seq_len"]
    assert rows[0]["flops_analytical"] < rows[1]["flops_analytical"]
    assert all(r["latency_ms"] > 0 for r in rows)
    for r in rows:
        # FlopCounterMode sees the linear layers and the head exactly. Two things the analytical count does
        # not model depend on the installed versions, so they are measured here rather than assumed:
        # - attention: counted when SDPA runs a kernel the counter has a formula for, else not at all;
        # - RoPE's frequency table: transformers versions that build it with a matmul (`inv_freq @ positions`,
        #   e.g. 5.17 on an H100 machine: +36 FLOPs at T=9) are counted; 5.24 multiplies
        #   elementwise (0). The analytical count has no term for it.
        t = r["seq_len"]
        attention = 2 * 4 * t * t * 64
        extra = _rope_table_flops(t)
        assert r["flops_counted"] - extra <= r["flops_analytical"]
        assert r["flops_analytical"] - (r["flops_counted"] - extra) in (0, attention)


def _rope_table_flops(seq_len: int) -> int:
    """What FlopCounterMode counts for pythia-tiny's rotary cos/sin table at ``seq_len`` (0 if no matmul)."""
    from torch.utils.flop_counter import FlopCounterMode

    from probes.models.registry import load_backbone

    model = load_backbone("pythia-tiny").model
    x = torch.zeros(1, seq_len, model.config.hidden_size)
    positions = torch.arange(seq_len)[None]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.gpt_neox.rotary_emb(x, positions)
    return int(counter.get_total_flops())


def test_pruning_cost_mamba_linear_in_length() -> None:
    rows = pruning_cost([4, 8], backbone="mamba-tiny", grid=4, text_tokens=0, measure_latency=False)
    f = [r["flops_analytical"] for r in rows]
    t = [r["seq_len"] for r in rows]
    assert f[0] / t[0] == pytest.approx(f[1] / t[1])  # no quadratic term
    assert "latency_ms" not in rows[0]


def test_pruning_cost_rejects_bad_k() -> None:
    with pytest.raises(UserError, match="k must be in 1..16"):
        pruning_cost([0, 17], backbone="pythia-tiny", grid=4)
