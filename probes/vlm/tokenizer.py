"""Text tokenizers for VLM backbones.

A real backbone directory ships its tokenizer (``AutoTokenizer.from_pretrained``). The offline tiny presets
have none, so one is trained here: a byte-level BPE (lossless decode, no unknown characters) on the
training texts, capped at the backbone's vocabulary so every id has an embedding row. It is saved with
the checkpoint so evaluation tokenises exactly as training did.

The image separators ``##`` / ``&&`` are *not* tokenizer entries: they are new embedding rows appended by
:func:`probes.models.resize.add_tokens` and their ids are stored in ``vlm_config.json``. Real tokenizers
often have fewer entries than the embedding matrix has rows (Pythia: 50277 vs 50304), so asking the
tokenizer to number them would collide with the padding rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from probes.errors import UserError

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Deterministic byte-level BPE with ``vocab_size`` entries at most (EOS and PAD included)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    if tok.get_vocab_size() > vocab_size:
        raise UserError(f"tokenizer needs {tok.get_vocab_size()} entries but the backbone has {vocab_size}")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if tok.eos_token_id is None:
        raise UserError(f"tokenizer in {path} has no EOS token")
    return tok


def encode(tok: PreTrainedTokenizerBase, text: str, *, lead_space: bool = True) -> tuple[int, ...]:
    """Token ids of one text segment, without special tokens. Segments are joined by one space."""
    text = text.strip()
    if not text:
        return ()
    return tuple(tok.encode((" " + text) if lead_space else text, add_special_tokens=False))


def decode(tok: PreTrainedTokenizerBase, ids: Iterable[int]) -> str:
    """Decode generated ids, skipping ids outside the tokenizer (image separators) and special tokens."""
    n = len(tok)
    return tok.decode([i for i in ids if 0 <= i < n], skip_special_tokens=True).strip()
