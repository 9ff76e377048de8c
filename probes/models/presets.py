"""Offline backbone presets built from config (random init), sized so CPU runs finish.

| preset        | family   | layers | d_model | params (base vocab 512) | note                                |
|---------------|----------|--------|---------|-------------------------|-------------------------------------|
| pythia-tiny   | gpt_neox | 2      | 64      | ~0.17M                  | Pythia architecture, untied head    |
| mamba-tiny    | mamba    | 2      | 64      | ~0.08M                  | Mamba-1 (state 16, expand 2), tied  |
| hybrid-tiny   | hybrid   | 2      | 64      | ~0.16M                  | Jamba: 1 Mamba-1 + 1 attention layer |
| pythia-small  | gpt_neox | 12     | 768     | ~85M + embeddings       | Pythia-160m shape (GPU)             |
| mamba-small   | mamba    | 24     | 768     | ~85M + embeddings       | mamba-130m shape (GPU)              |

Tiny presets use a 512-token base vocabulary: position labels ``pos_offset + k`` must be existing ids, so
they support lengths up to 510 with the default offset. The small presets use Pythia's 50304 rows.
"""

from __future__ import annotations

from collections.abc import Callable

import transformers
from transformers import GPTNeoXConfig, JambaConfig, MambaConfig, PretrainedConfig

TINY_VOCAB = 512

# transformers 4.x Jamba raises on CPU unless `use_mamba_kernels=False`; 5.x picks the path itself and warns
# that the flag is deprecated, so it is passed only where it still means something.
_JAMBA_KERNEL_FLAG = {"use_mamba_kernels": False} if int(transformers.__version__.split(".")[0]) < 5 else {}


def _pythia(hidden: int, layers: int, heads: int, vocab: int) -> GPTNeoXConfig:
    return GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=8192,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        hidden_dropout=0.0,
    )


def _mamba(hidden: int, layers: int, vocab: int) -> MambaConfig:
    return MambaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        state_size=16,
        num_hidden_layers=layers,
        expand=2,
        conv_kernel=4,
        tie_word_embeddings=True,
        use_mambapy=False,
    )


def _hybrid(hidden: int, layers: int, vocab: int) -> JambaConfig:
    return JambaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_experts=1,
        num_experts_per_tok=1,
        expert_layer_period=1,
        expert_layer_offset=0,
        attn_layer_period=2,
        attn_layer_offset=1,
        mamba_d_state=16,
        mamba_d_conv=4,
        mamba_expand=2,
        **_JAMBA_KERNEL_FLAG,
        tie_word_embeddings=False,
        max_position_embeddings=8192,
    )


PRESETS: dict[str, tuple[str, Callable[[], PretrainedConfig]]] = {
    "pythia-tiny": ("gpt_neox", lambda: _pythia(64, 2, 4, TINY_VOCAB)),
    "mamba-tiny": ("mamba", lambda: _mamba(64, 2, TINY_VOCAB)),
    "hybrid-tiny": ("hybrid", lambda: _hybrid(64, 2, TINY_VOCAB)),
    "pythia-small": ("gpt_neox", lambda: _pythia(768, 12, 12, 50304)),
    "mamba-small": ("mamba", lambda: _mamba(768, 24, 50280)),
}
