"""VLM assembly, batched greedy decoding (left-padded / length-grouped) and checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from probes.errors import UserError
from probes.vlm.model import build_vlm, load_vlm
from probes.vlm.sequence import TextParts, Turn
from probes.vlm.tokenizer import encode, train_tokenizer

TEXTS = ["the red circle", "how many objects are there?", "[0.12, 0.50, 0.33, 0.90]", "yes", "no", "3"] * 5
PROMPTS = ["the red circle", "how many objects are there?", "no"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, 512)


@pytest.mark.parametrize("backbone", ["pythia-tiny", "mamba-tiny"])
def test_batched_generate_equals_one_by_one_and_reloads(backbone: str, tok, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    vlm = build_vlm(backbone=backbone, encoder="tiny", connector="mlp", tokenizer=tok, seed=3)
    assert vlm.config.image_open_id == 512 and vlm.config.row_sep_id == 513  # new rows after the 512 base rows
    px = torch.randn(3, 3, 84, 84, generator=torch.Generator().manual_seed(0))
    for aware in (False, True):
        batched = vlm.generate(px, PROMPTS, task_aware=aware, max_new_tokens=4)
        single = [vlm.generate(px[i : i + 1], [p], task_aware=aware, max_new_tokens=4)[0] for i, p in enumerate(PROMPTS)]
        assert batched == single and all(isinstance(s, str) for s in batched)
    vlm.save(tmp_path / "ckpt")
    again = load_vlm(tmp_path / "ckpt")
    assert again.config == vlm.config
    assert again.generate(px, PROMPTS, task_aware=False, max_new_tokens=4) == vlm.generate(px, PROMPTS, task_aware=False, max_new_tokens=4)
    parts = [TextParts(encode(tok, "x"), (Turn(encode(tok, p), encode(tok, "yes")),)) for p in PROMPTS]
    assert torch.isclose(again(px, parts), vlm(px, parts), atol=1e-5)


def test_loss_backpropagates_into_connector_and_visual_tokens_are_used(tok) -> None:
    vlm = build_vlm(backbone="pythia-tiny", encoder="tiny", connector="mlp", tokenizer=tok)
    parts = [TextParts((), (Turn(encode(tok, "the red circle"), encode(tok, "yes")),))] * 2
    px = torch.randn(2, 3, 84, 84)
    loss = vlm(px, parts)
    loss.backward()
    assert torch.isfinite(loss) and vlm.connector[0].weight.grad.abs().sum() > 0
    assert not torch.isclose(vlm(torch.zeros_like(px), parts), vlm(px, parts))


def test_bad_checkpoint_and_mismatched_batch(tok, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a VLM checkpoint"):
        load_vlm(tmp_path)
    vlm = build_vlm(backbone="pythia-tiny", encoder="tiny", connector="mlp", tokenizer=tok)
    with pytest.raises(UserError, match="images for"):
        vlm.generate(torch.zeros(1, 3, 84, 84), ["a", "b"], task_aware=False, max_new_tokens=2)
    with pytest.raises(UserError, match="image file not found"):
        vlm.pixel_values([tmp_path / "nope.png"])


@pytest.mark.parametrize("backbone", ["pythia-tiny", "mamba-tiny"])
def test_save_from_a_given_state_dict(backbone: str, tok, tmp_path: Path) -> None:
    """The engine hands `save` the gathered weights under FSDP: saving another VLM's full state dict through
    this one writes a checkpoint that loads as that VLM (tied Mamba head included)."""
    from safetensors.torch import load_file

    source = build_vlm(backbone=backbone, encoder="tiny", connector="mlp", tokenizer=tok, seed=3)
    holder = build_vlm(backbone=backbone, encoder="tiny", connector="mlp", tokenizer=tok, seed=4)
    holder.save(tmp_path / "given", state_dict=source.state_dict())
    source.save(tmp_path / "own")
    a, b = load_file(str(tmp_path / "given/vision.safetensors")), load_file(str(tmp_path / "own/vision.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = load_vlm(tmp_path / "given")
    for (name, p), (_, q) in zip(again.backbone.state_dict().items(), source.backbone.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
