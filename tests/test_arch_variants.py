"""The hybrid-diagnosis variants differ from hybrid-tiny in exactly the respect their name says."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from probes.models.registry import load_backbone
from probes.studies.hybrid_variants import VARIANTS, build_variant, write_variants


def _layers(model: torch.nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.model.layers]


def _delta(model: torch.nn.Module) -> torch.Tensor:
    mixer = next(m for m in model.modules() if type(m).__name__ == "JambaMambaMixer")
    return torch.nn.functional.softplus(mixer.dt_proj.bias.detach())


def test_variants_differ_in_the_named_respect() -> None:
    ma = ["JambaMambaDecoderLayer", "JambaAttentionDecoderLayer"]
    assert _layers(load_backbone("hybrid-tiny").model) == ma
    assert _layers(build_variant("jamba-hf-init")) == ma
    assert _layers(build_variant("jamba-am")) == ma[::-1]
    assert _layers(build_variant("jamba-hf-init-am")) == ma[::-1]
    generic = _delta(build_variant("jamba-hf-init"))
    assert torch.allclose(generic, torch.full_like(generic, math.log(2.0)))  # softplus(0): transformers' init
    for name in ("jamba-dt-only", "jamba-am"):
        d = _delta(build_variant(name))
        assert float(d.min()) >= 0.99e-3 and float(d.max()) <= 0.101
    dt_only, hf = build_variant("jamba-dt-only"), build_variant("jamba-hf-init")
    mixer = next(m for m in dt_only.modules() if type(m).__name__ == "JambaMambaMixer")
    ref = next(m for m in hf.modules() if type(m).__name__ == "JambaMambaMixer")
    assert torch.equal(mixer.conv1d.weight, ref.conv1d.weight)  # only Δ changed
    assert torch.equal(mixer.out_proj.weight, ref.out_proj.weight)
    same = build_variant("jamba-mamba-init", seed=2).state_dict()
    preset = load_backbone("hybrid-tiny", seed=2).model.state_dict()
    assert all(torch.equal(same[k], preset[k]) for k in preset)  # the preset, any model seed
    assert build_variant("zamba2-norope").config.use_mem_rope is False
    assert load_backbone("zamba2-tiny").model.config.use_mem_rope is True


def test_write_variants_round_trips_through_save_pretrained(tmp_path: Path) -> None:
    (path,) = write_variants(tmp_path, seed=0, names=["jamba-am"])
    loaded = AutoModelForCausalLM.from_pretrained(path)
    built = build_variant("jamba-am", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), built.state_dict().values(), strict=True))
    assert set(VARIANTS) >= {"jamba-hf-init", "jamba-am", "jamba-dt-only", "zamba2-norope"}
