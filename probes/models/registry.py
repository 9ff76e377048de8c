"""Load any causal LM backbone: an offline preset, a local `save_pretrained` directory, or a hub id.

The probe trainer and the VLM share this one entry point, so a backbone name means the same everywhere and
the model family (which decides the Mamba fast path and the report's Mamba/Pythia grouping) is detected
once, from the transformers config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from probes.errors import UserError

from .hub import hub_reachable
from .presets import PRESETS, finish_preset

# transformers model_type -> our family label (the report groups "mamba"-like vs "gpt_neox")
FAMILIES: dict[str, str] = {
    "gpt_neox": "gpt_neox",
    "mamba": "mamba",
    "falcon_mamba": "mamba",
    "mamba2": "mamba2",
    "jamba": "hybrid",
    "zamba": "hybrid",
    "zamba2": "hybrid",
    "bamba": "hybrid",
    "falcon_h1": "hybrid",
    "nemotron_h": "hybrid",
    "granitemoehybrid": "hybrid",
}


@dataclass
class Backbone:
    model: PreTrainedModel
    name: str
    family: str
    model_type: str

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding: the id the first added token gets."""
        return int(self.model.get_input_embeddings().weight.shape[0])

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def family_of(config: PretrainedConfig) -> str:
    return FAMILIES.get(config.model_type, config.model_type)


def preset_names() -> list[str]:
    return sorted(PRESETS)


def load_config(name_or_path: str) -> PretrainedConfig:
    if name_or_path in PRESETS:
        return PRESETS[name_or_path][1]()
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is a directory without config.json: not a save_pretrained checkpoint")
        try:
            return AutoConfig.from_pretrained(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # corrupt JSON, unknown model_type
            raise UserError(f"{path}/config.json cannot be used: {_first_line(exc)}") from None
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        raise UserError(f"model path {name_or_path} is not a readable checkpoint directory")
    online = hub_reachable()  # unreachable: look in the local cache only, fail in ms instead of retrying
    try:
        return AutoConfig.from_pretrained(name_or_path, local_files_only=not online)
    except (OSError, ValueError) as exc:
        offline = not online
        why = "the hub is offline or unreachable" if offline else "it is not on the hub or the hub is unreachable"
        raise UserError(
            f"unknown model {name_or_path!r}: not a preset ({', '.join(preset_names())}), not a local directory, "
            f"and {why} ({type(exc).__name__})"
        ) from None


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar from transformers: our commands draw their own progress, and a failing load
    must leave one error line on stderr, not a bar above it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_backbone(name_or_path: str, *, seed: int = 0, dtype: torch.dtype | None = None) -> Backbone:
    """Build a preset (seeded random init) or load pretrained weights from a directory or hub id."""
    config = load_config(name_or_path)
    if name_or_path in PRESETS:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        finish_preset(name_or_path, model)  # e.g. Jamba's Mamba init (presets.init_mamba1_mixers)
    else:
        try:
            with _quiet_loading():
                model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype or torch.float32)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:  # truncated / mismatched weights
            raise UserError(f"cannot load weights of {name_or_path!r}: {_first_line(exc)}") from None
    if dtype is not None:
        model = model.to(dtype)
    return Backbone(model=model, name=name_or_path, family=family_of(config), model_type=config.model_type)
