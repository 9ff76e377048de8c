"""Encoders on tiny locally built configs (no hub): shapes, CLS dropped, resolution change, frozen weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from probes.errors import UserError
from probes.vlm.connector import build_connector
from probes.vlm.encoders import build_encoder

EVA_TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2}


def test_eva02_tiny_weights_file_and_resolution(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    enc = build_encoder("eva02-l14-336", resolution=56, overrides=EVA_TINY)
    assert not enc.trainable and not any(p.requires_grad for p in enc.parameters())
    x = torch.randn(2, 3, 56, 56)
    assert enc(x).shape == (2, 16, 32)  # (56 / 14)^2 patches, CLS dropped
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(tmp_path / "eva.safetensors"))
    loaded = build_encoder("eva02-l14-336", resolution=56, overrides=EVA_TINY, weights=str(tmp_path / "eva.safetensors"), seed=9)
    assert torch.allclose(loaded(x), enc(x), atol=1e-5)
    loaded.set_resolution(84)  # position embeddings interpolated
    assert loaded(torch.randn(1, 3, 84, 84)).shape == (1, 36, 32)
    with pytest.raises(UserError, match="not found"):
        build_encoder("eva02-l14-336", overrides=EVA_TINY, weights=str(tmp_path / "nope.safetensors"))


def test_clip_tiny_local_directory(tmp_path: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=56, patch_size=14)
    CLIPVisionModel(cfg).save_pretrained(tmp_path / "clip")
    enc = build_encoder("clip-l14-336", resolution=56, weights=str(tmp_path / "clip"))
    assert enc(torch.randn(1, 3, 56, 56)).shape == (1, 16, 32)
    enc.set_resolution(84)
    assert enc(torch.randn(1, 3, 84, 84)).shape == (1, 36, 32)
    with pytest.raises(UserError, match="encoder-weights"):
        build_encoder("clip-l14-336")


def test_tiny_encoder_trainable_and_deterministic() -> None:
    a, b = build_encoder("tiny", seed=1), build_encoder("tiny", seed=1)
    x = torch.randn(1, 3, 84, 84)
    assert a.trainable and a.grid == (6, 6)
    assert torch.equal(a(x), b(x)) and a(x).shape == (1, 36, 64)
    a.set_resolution(112)
    assert a(torch.randn(1, 3, 112, 112)).shape == (1, 64, 64)


def test_connector_and_unknown_names() -> None:
    c = build_connector("mlp", 32, 48, (4, 4))
    assert c(torch.randn(2, 16, 32)).shape == (2, 16, 48)
    assert isinstance(c[1], torch.nn.GELU)
    with pytest.raises(UserError, match="unknown connector"):
        build_connector("linear", 32, 48, (4, 4))
    with pytest.raises(UserError, match="unknown vision encoder"):
        build_encoder("resnet")
    with pytest.raises(UserError, match="multiple of the patch"):
        build_encoder("tiny", resolution=90)
