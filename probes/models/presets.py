"""Offline backbone presets built from config (random init), sized so CPU runs finish.

| preset        | family   | layers | d_model | params (base vocab 512) | note                                          |
|---------------|----------|--------|---------|-------------------------|-----------------------------------------------|
| pythia-tiny   | gpt_neox | 2      | 64      | ~0.17M                  | Pythia, untied head, rotary on all 16 head dims |
| mamba-tiny    | mamba    | 2      | 64      | ~0.10M                  | Mamba-1 (state 16, expand 2), tied            |
| mamba2-tiny   | mamba2   | 2      | 64      | ~0.09M                  | Mamba-2 (8 heads of 16, state 16, chunk 16)   |
| hybrid-tiny   | hybrid   | 2      | 64      | ~0.21M                  | Jamba: Mamba-1 then attention (no PE), Mamba init |
| zamba2-tiny   | hybrid   | 2      | 64      | ~0.27M                  | Zamba2: Mamba-2, then shared attn (rotary)+Mamba-2 |
| pythia-tiny-rot4 / -rot8 | gpt_neox | 2 | 64  | ~0.17M                  | ablation: rotary on 4 / 8 of 16 head dims     |
| mamba-tiny-s1 / -s4 | mamba | 2      | 64      | ~0.09M / ~0.10M         | capacity sweep: state size 1 / 4              |
| pythia-small  | gpt_neox | 12     | 768     | ~85M + embeddings       | Pythia-160m shape (GPU)                       |
| mamba-small   | mamba    | 24     | 768     | ~85M + embeddings       | mamba-130m shape (GPU)                        |

Why pythia-tiny has rotary on every head dim: Pythia-1.4B rotates 32 of its 128 head dims (16 frequencies),
which at the paper's L <= 200 resolve every position. 25 % of a 16-dim head is 4 dims (2 frequencies, one of
them turning 0.01 rad per token): too little to tell positions apart, which made the tiny Transformer slow
on position retrieval for a reason the paper's model does not have (the rotary ablation in
``figures/rotary_ablation``). Full rotary gives 16 dims, the closest a 16-dim head gets to Pythia's 16
frequencies. Known handicaps that stay, stated so results are read with them: mamba-tiny's state (16 per
channel, 128 channels, 2 layers) is larger relative to L <= 16 than Mamba-1.4B's is to L = 200, so the
capacity regime needs the ``-s*`` presets; hybrid-tiny's attention has no positional encoding (Jamba's design).

Tiny presets use a 512-token base vocabulary: position labels ``pos_offset + k`` must be existing ids, so
they support lengths up to 510 with the default offset. The small presets use Pythia's 50304 rows.
Every preset is built by :func:`probes.models.registry.load_backbone` from ``torch.manual_seed(seed)``,
then :func:`finish_preset` (Jamba's Mamba layers get Mamba's init: see :func:`init_mamba1_mixers`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import transformers
from torch import nn
from transformers import (
    GPTNeoXConfig,
    JambaConfig,
    Mamba2Config,
    MambaConfig,
    PretrainedConfig,
    PreTrainedModel,
    Zamba2Config,
)

TINY_VOCAB = 512

# transformers 4.x Jamba raises on CPU unless `use_mamba_kernels=False`; 5.x picks the path itself and warns
# that the flag is deprecated, so it is passed only where it still means something.
_JAMBA_KERNEL_FLAG = {"use_mamba_kernels": False} if int(transformers.__version__.split(".")[0]) < 5 else {}


def _pythia(hidden: int, layers: int, heads: int, vocab: int, rotary_pct: float = 0.25) -> GPTNeoXConfig:
    """GPT-NeoX as Pythia builds it. ``rotary_pct``: share of each head's dims that get rotary positions;
    Pythia's 0.25 of a 128-dim head is 32 rotary dims (16 frequencies). The tiny presets set it from their
    16-dim heads instead (README "Presets": same positional capacity, not the same percentage)."""
    return GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=8192,
        rotary_pct=rotary_pct,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        hidden_dropout=0.0,
    )


def _mamba(hidden: int, layers: int, vocab: int, state: int = 16) -> MambaConfig:
    """Mamba-1. ``state``: the SSM state size N per channel (16 in every released Mamba); the capacity
    presets ``mamba-tiny-s*`` shrink it to find where retrieval stops (README "Architecture study")."""
    return MambaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        state_size=state,
        num_hidden_layers=layers,
        expand=2,
        conv_kernel=4,
        tie_word_embeddings=True,
        use_mambapy=False,
    )


def _hybrid(hidden: int, layers: int, vocab: int, attn_offset: int = 1) -> JambaConfig:
    """Jamba (Lieber et al., 2024): Mamba-1 layers with attention every ``attn_layer_period`` layers, no
    positional encoding in attention (position comes from the Mamba layers). ``attn_offset=1``: Mamba first."""
    return JambaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_experts=1,  # a plain JambaMLP: transformers builds no router when a layer has one expert
        num_experts_per_tok=1,
        expert_layer_period=1,
        expert_layer_offset=0,
        attn_layer_period=2,
        attn_layer_offset=attn_offset,
        mamba_d_state=16,
        mamba_d_conv=4,
        mamba_expand=2,
        **_JAMBA_KERNEL_FLAG,
        tie_word_embeddings=False,
        max_position_embeddings=8192,
    )


def _mamba2(hidden: int, layers: int, vocab: int) -> Mamba2Config:
    """Mamba-2 (Dao & Gu, 2024): scalar-decay SSD heads. A small ``chunk_size`` keeps transformers' chunked
    PyTorch SSD path cheap on a CPU at probe lengths (its cost grows with the chunk length squared)."""
    return Mamba2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        state_size=16,
        expand=2,
        head_dim=16,
        num_heads=2 * hidden // 16,
        n_groups=1,
        conv_kernel=4,
        chunk_size=16,
        tie_word_embeddings=True,
        initializer_range=0.02,
    )


def _zamba2(hidden: int, layers: int, vocab: int) -> Zamba2Config:
    """Zamba2 (Glorioso et al., 2024): Mamba-2 layers plus one *shared* attention+MLP block applied (on the
    concatenation of the hidden state and the original embeddings) before the ``hybrid`` layers. Attention
    has rotary positions (``use_mem_rope``), unlike Jamba's. Layer 0 is plain Mamba-2, layer 1 the shared
    block followed by Mamba-2, so the order is Mamba -> attention(+Mamba) as in ``hybrid-tiny``."""
    return Zamba2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        layers_block_type=["mamba"] + ["hybrid"] * (layers - 1),
        mamba_d_state=16,
        mamba_expand=2,
        n_mamba_heads=2 * hidden // 16,
        mamba_ngroups=1,
        chunk_size=16,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=4 * hidden,
        num_mem_blocks=1,
        use_mem_rope=True,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def init_mamba1_mixers(model: nn.Module, time_step_min: float = 1e-3, time_step_max: float = 0.1) -> int:
    """Give every Jamba Mamba-1 mixer Mamba's reference init; return how many were changed.

    Why: transformers' Jamba is meant to be loaded pretrained, and its ``_init_weights`` leaves ``dt_proj``
    at the generic init (bias 0, weight N(0, 0.02)). Behind Jamba's dt RMSNorm that makes Δ = softplus(≈0)
    ≈ 0.69 at every position and channel: with A = -(1..16) the state halves (or faster) at every token, so
    a from-scratch Jamba layer only sees the last few tokens and cannot carry position to the attention
    layer (see the README's hybrid diagnosis). Mamba's init (Gu & Dao, 2023, §3.6 and their reference
    code; transformers' ``MambaMixer.init_mamba_weights``) draws Δ log-uniform in [1e-3, 0.1] through the
    bias, ``dt_proj.weight`` uniform ±rank^-0.5, and Kaiming-uniform conv and output projections; the same is
    applied here, from the global RNG (seeded by the caller).
    """
    from transformers.models.jamba.modeling_jamba import JambaMambaMixer

    changed = 0
    for mixer in model.modules():
        if not isinstance(mixer, JambaMambaMixer):
            continue
        with torch.no_grad():
            std = mixer.time_step_rank**-0.5
            nn.init.uniform_(mixer.dt_proj.weight, -std, std)
            dt = torch.exp(
                torch.rand(mixer.intermediate_size) * (math.log(time_step_max) - math.log(time_step_min))
                + math.log(time_step_min)
            ).clamp(min=1e-4)
            mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            nn.init.kaiming_uniform_(mixer.conv1d.weight, a=math.sqrt(5))
            if mixer.conv1d.bias is not None:
                nn.init.zeros_(mixer.conv1d.bias)
            nn.init.kaiming_uniform_(mixer.out_proj.weight, a=math.sqrt(5))
        changed += 1
    return changed


def finish_preset(name: str, model: PreTrainedModel) -> None:
    """Post-construction init for presets whose transformers init is not a from-scratch one (Jamba)."""
    if PRESETS[name][0] == "hybrid" and model.config.model_type == "jamba":
        init_mamba1_mixers(model)


PRESETS: dict[str, tuple[str, Callable[[], PretrainedConfig]]] = {
    "pythia-tiny": ("gpt_neox", lambda: _pythia(64, 2, 4, TINY_VOCAB, rotary_pct=1.0)),
    "mamba-tiny": ("mamba", lambda: _mamba(64, 2, TINY_VOCAB)),
    "hybrid-tiny": ("hybrid", lambda: _hybrid(64, 2, TINY_VOCAB)),
    "mamba2-tiny": ("mamba2", lambda: _mamba2(64, 2, TINY_VOCAB)),
    "zamba2-tiny": ("hybrid", lambda: _zamba2(64, 2, TINY_VOCAB)),
    # ablation / capacity presets (README "Presets"): the rotary ablation and the state-size sweep
    "pythia-tiny-rot4": ("gpt_neox", lambda: _pythia(64, 2, 4, TINY_VOCAB, rotary_pct=0.25)),
    "pythia-tiny-rot8": ("gpt_neox", lambda: _pythia(64, 2, 4, TINY_VOCAB, rotary_pct=0.5)),
    "mamba-tiny-s1": ("mamba", lambda: _mamba(64, 2, TINY_VOCAB, state=1)),
    "mamba-tiny-s4": ("mamba", lambda: _mamba(64, 2, TINY_VOCAB, state=4)),
    "pythia-small": ("gpt_neox", lambda: _pythia(768, 12, 12, 50304)),
    "mamba-small": ("mamba", lambda: _mamba(768, 24, 50280)),
    "pythia-1.4b-shape": ("gpt_neox", lambda: _pythia(2048, 24, 16, 50304)),  # GPU only: Pythia-1.4B's shape
    "mamba-1.4b-shape": ("mamba", lambda: _mamba(2048, 48, 50280)),  # GPU only: mamba-1.4b-hf's shape
}
