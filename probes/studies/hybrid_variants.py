"""Checkpoints of the hybrid variants used to diagnose hybrid-tiny (README "Architecture study").

Each variant is a ``save_pretrained`` directory, so the ordinary trainer runs it unchanged
(``probes synth --model DIR``). Variants differ from ``hybrid-tiny`` in exactly one respect:

| variant              | what differs from hybrid-tiny (Jamba, Mamba -> attention, Mamba init)          |
|----------------------|--------------------------------------------------------------------------------|
| jamba-mamba-init     | nothing: hybrid-tiny itself (so other model seeds can be written with --seed)  |
| jamba-hf-init        | transformers' generic init (the old hybrid-tiny): Δ = softplus(0) = 0.69       |
| jamba-hf-init-am     | generic init and attention -> Mamba order                                      |
| jamba-dt-only        | generic init except the Δ bias/weight (Mamba's dt init only)                   |
| jamba-no-dt          | Mamba init except Δ (conv and out-projection Kaiming, Δ left generic)          |
| jamba-am             | attention -> Mamba order                                                       |
| zamba2-norope        | zamba2-tiny without rotary positions in its shared attention block             |

Usage: ``python -m probes.studies.hybrid_variants OUT_DIR [--seed 0]``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from probes.models.presets import PRESETS, TINY_VOCAB, _hybrid, init_mamba1_mixers


def _dt_only(model: PreTrainedModel) -> None:
    """Mamba's Δ init only (bias log-uniform in [1e-3, 0.1], weight ±rank^-0.5); conv/out_proj untouched."""
    from transformers.models.jamba.modeling_jamba import JambaMambaMixer

    for mixer in model.modules():
        if isinstance(mixer, JambaMambaMixer):
            with torch.no_grad():
                std = mixer.time_step_rank**-0.5
                torch.nn.init.uniform_(mixer.dt_proj.weight, -std, std)
                dt = torch.exp(torch.rand(mixer.intermediate_size) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))


def _all_but_dt(model: PreTrainedModel) -> None:
    """Mamba's init for the conv and output projection only; Δ keeps transformers' generic init."""
    from transformers.models.jamba.modeling_jamba import JambaMambaMixer

    for mixer in model.modules():
        if isinstance(mixer, JambaMambaMixer):
            with torch.no_grad():
                torch.nn.init.kaiming_uniform_(mixer.conv1d.weight, a=math.sqrt(5))
                if mixer.conv1d.bias is not None:
                    torch.nn.init.zeros_(mixer.conv1d.bias)
                torch.nn.init.kaiming_uniform_(mixer.out_proj.weight, a=math.sqrt(5))


def _zamba2_norope() -> PretrainedConfig:
    config = PRESETS["zamba2-tiny"][1]()
    config.use_mem_rope = False
    return config


def _none(model: PreTrainedModel) -> None:
    return None


def _mamba_init(model: PreTrainedModel) -> None:
    init_mamba1_mixers(model)


VARIANTS: dict[str, tuple[Callable[[], PretrainedConfig], Callable[[PreTrainedModel], None]]] = {
    "jamba-mamba-init": (lambda: _hybrid(64, 2, TINY_VOCAB, attn_offset=1), _mamba_init),
    "jamba-hf-init": (lambda: _hybrid(64, 2, TINY_VOCAB, attn_offset=1), _none),
    "jamba-hf-init-am": (lambda: _hybrid(64, 2, TINY_VOCAB, attn_offset=0), _none),
    "jamba-dt-only": (lambda: _hybrid(64, 2, TINY_VOCAB, attn_offset=1), _dt_only),
    "jamba-no-dt": (lambda: _hybrid(64, 2, TINY_VOCAB, attn_offset=1), _all_but_dt),
    "jamba-am": (lambda: _hybrid(64, 2, TINY_VOCAB, attn_offset=0), _mamba_init),
    "zamba2-norope": (_zamba2_norope, _none),
}


def build_variant(name: str, seed: int = 0) -> PreTrainedModel:
    """The variant's model, random init from ``seed`` (as ``load_backbone`` seeds presets)."""
    make_config, finish = VARIANTS[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config())
    finish(model)
    return model


def write_variants(out: Path, seed: int = 0, names: list[str] | None = None) -> list[Path]:
    written = []
    for name in names or list(VARIANTS):
        path = out / name
        build_variant(name, seed).save_pretrained(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in write_variants(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
