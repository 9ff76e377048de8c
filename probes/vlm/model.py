"""The VLM: vision encoder → connector → (optional saliency pruning) → language backbone.

Checkpoint directory (``VLM.save`` / :func:`load_vlm`)::

    vlm_config.json       VLMConfig (schema_version 1): names, resolution, separator/EOS/pad ids
    backbone/             the language model, ``save_pretrained`` layout (vocabulary grown by 2 rows)
    tokenizer/            the text tokenizer
    vision.safetensors    encoder (incl. frozen weights, so no external file is needed), connector, pruner
    encoder_config/       CLIP only: the CLIPVisionConfig to rebuild the architecture

Batched greedy decoding: attention backbones (GPT-NeoX) decode one left-padded batch with an attention
mask. Recurrent and hybrid backbones (Mamba, Jamba) would fold pad tokens into their state, so their
prompts are grouped by token length and each group decodes without padding — exact for every family.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from probes.errors import UserError
from probes.families import has_ssm_layers, is_transformer
from probes.io import apply_default_modes, atomic_path, atomic_write_json, ensure_writable_dir
from probes.models.registry import load_backbone
from probes.models.resize import add_tokens

from .connector import build_connector
from .encoders import ClipEncoder, VisionEncoder, build_encoder
from .image import load_image, pixel_tensor
from .sequence import IGNORE, BuiltSequence, SpecialIds, TextParts, Turn, build_sequence
from .tokenizer import decode, encode, load_tokenizer

SCHEMA_VERSION = 1


@dataclass
class VLMConfig:
    backbone: str
    family: str
    encoder: str
    connector: str
    resolution: int
    image_open_id: int
    row_sep_id: int
    eos_id: int
    pad_id: int
    task_aware: bool | str = False  # an order of probes.vlm.sequence.ORDERS; bools from older checkpoints
    prune_k: int | None = None
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VLMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"vlm_config.json has unknown keys: {', '.join(sorted(unknown))}")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"vlm_config.json schema_version {d.get('schema_version')} is not {SCHEMA_VERSION}")
        return cls(**d)


@dataclass
class Batch:
    """Right-padded training tensors for one batch of built sequences."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    image_mask: torch.Tensor
    example_index: torch.Tensor
    attention_mask: torch.Tensor


def pad_sequences(seqs: Sequence[BuiltSequence], pad_id: int, *, left: bool = False) -> Batch:
    width = max(len(s) for s in seqs)

    def pad(rows: list[list[Any]], value: Any, dtype: torch.dtype) -> torch.Tensor:
        out = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
        return torch.tensor(out, dtype=dtype)

    return Batch(
        input_ids=pad([s.input_ids for s in seqs], pad_id, torch.long),
        labels=pad([s.labels for s in seqs], IGNORE, torch.long),
        image_mask=pad([s.image_mask for s in seqs], False, torch.bool),
        example_index=pad([s.example_index for s in seqs], -1, torch.long),
        attention_mask=pad([[1] * len(s) for s in seqs], 0, torch.long),
    )


class VLM(nn.Module):
    def __init__(
        self,
        config: VLMConfig,
        encoder: VisionEncoder,
        connector: nn.Module,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pruner: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config, self.encoder, self.connector, self.backbone = config, encoder, connector, backbone
        self.pruner = pruner
        self.tokenizer = tokenizer
        self.special = SpecialIds(config.image_open_id, config.row_sep_id, config.eos_id, config.pad_id)

    # ---- images -------------------------------------------------------------------------------------------
    def pixel_values(self, images: Sequence[Image.Image | str | Path]) -> torch.Tensor:
        """Letterboxed, resized, normalised ``[B, 3, R, R]`` for this model's encoder."""
        enc = self.encoder
        pils = [im if isinstance(im, Image.Image) else load_image(im) for im in images]
        return torch.stack([pixel_tensor(im, enc.resolution, enc.mean, enc.std) for im in pils])

    def set_resolution(self, resolution: int) -> None:
        """Evaluate at another input resolution (the grid, hence the sequence, grows accordingly)."""
        self.encoder.set_resolution(resolution)

    def visual_tokens(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Connector outputs ``[B, k, D_lm]`` and the kept patch indices (None without pruning)."""
        pixel_values = pixel_values.to(next(self.connector.parameters()).device)
        if self.encoder.trainable:
            feats = self.encoder(pixel_values)
        else:
            with torch.no_grad():
                feats = self.encoder(pixel_values)
        kept_index = None
        if self.pruner is not None:
            feats, kept_index = self.pruner(feats)
        return self.connector(feats), kept_index

    # ---- sequences ----------------------------------------------------------------------------------------
    def build(
        self, parts: Sequence[TextParts], kept_index: torch.Tensor | None, task_aware: bool | str
    ) -> list[BuiltSequence]:
        grid_w = self.encoder.grid[1]
        return [
            build_sequence(
                p,
                self.special,
                grid_w=grid_w,
                n_patches=self.encoder.n_patches,
                task_aware=task_aware,
                kept_index=None if kept_index is None else kept_index[i].tolist(),
            )
            for i, p in enumerate(parts)
        ]

    def embed(self, batch: Batch, visual: torch.Tensor) -> torch.Tensor:
        emb = self.backbone.get_input_embeddings()(batch.input_ids)
        return emb.masked_scatter(batch.image_mask.unsqueeze(-1), visual.to(emb.dtype))

    def forward(
        self,
        pixel_values: torch.Tensor,
        parts: Sequence[TextParts],
        task_aware: bool | str | None = None,
        loss_norm: str = "sequence",
    ) -> torch.Tensor:
        """Training loss; ``task_aware``: an order name or bool (default: the config's); ``loss_norm``: see
        :mod:`probes.vlm.packing` (default per sequence, as the paper)."""
        from .packing import sequence_loss

        visual, kept_index = self.visual_tokens(pixel_values)
        ta = self.config.task_aware if task_aware is None else task_aware
        batch = pad_sequences(self.build(parts, kept_index, ta), self.special.pad)
        dev = visual.device
        batch = Batch(*(t.to(dev) for t in asdict_tensors(batch)))
        logits = self.backbone(inputs_embeds=self.embed(batch, visual), attention_mask=batch.attention_mask).logits
        return sequence_loss(logits, batch.labels, batch.example_index, loss_norm)

    # ---- decoding -----------------------------------------------------------------------------------------
    def prompt_parts(self, prompts: Sequence[str], instructions: Sequence[str] | None = None) -> list[TextParts]:
        instructions = instructions or [""] * len(prompts)
        if len(instructions) != len(prompts):
            raise UserError(f"{len(instructions)} instructions for {len(prompts)} prompts")
        return [
            TextParts(encode(self.tokenizer, ins), (Turn(encode(self.tokenizer, p)),))
            for ins, p in zip(instructions, prompts, strict=True)
        ]

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        prompts: list[str],
        task_aware: bool | str,
        max_new_tokens: int,
        instructions: list[str] | None = None,
    ) -> list[str]:
        """Greedy decoding of one response per (image, prompt); returns the decoded texts."""
        if pixel_values.shape[0] != len(prompts):
            raise UserError(f"{pixel_values.shape[0]} images for {len(prompts)} prompts")
        was_training = self.training
        self.eval()
        visual, kept_index = self.visual_tokens(pixel_values)
        seqs = self.build(self.prompt_parts(prompts, instructions), kept_index, task_aware)
        if is_transformer(self.config.family):  # left padding is exact for attention, not for a scan
            groups = [list(range(len(seqs)))]
        else:
            by_len: dict[int, list[int]] = {}
            for i, s in enumerate(seqs):
                by_len.setdefault(len(s), []).append(i)
            groups = list(by_len.values())
        out: list[str] = [""] * len(seqs)
        for idx in groups:
            batch = pad_sequences([seqs[i] for i in idx], self.special.pad, left=True)
            batch = Batch(*(t.to(visual.device) for t in asdict_tensors(batch)))
            embeds = self.embed(batch, visual[idx])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=embeds.is_cuda):
                gen = self.backbone.generate(
                    inputs_embeds=embeds,
                    attention_mask=batch.attention_mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=self.special.eos,
                    pad_token_id=self.special.pad,
                )
            for row, i in enumerate(idx):
                ids = gen[row].tolist()
                if self.special.eos in ids:
                    ids = ids[: ids.index(self.special.eos)]
                out[i] = decode(self.tokenizer, ids)
        self.train(was_training)
        return out

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write the checkpoint directory (see module docstring); files are replaced atomically.

        ``state_dict``: the weights to write instead of this module's own (under FSDP the module holds
        shards; the engine gathers the whole state for the main process)."""
        path = Path(path)
        ensure_writable_dir(path)
        weights = self.state_dict() if state_dict is None else state_dict
        backbone = None if state_dict is None else {
            k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")
        }
        self.backbone.save_pretrained(path / "backbone", state_dict=backbone)
        self.tokenizer.save_pretrained(str(path / "tokenizer"))
        if isinstance(self.encoder, ClipEncoder):
            self.encoder.model.config.save_pretrained(path / "encoder_config")
        state = {
            k: v.detach().contiguous().cpu()
            for k, v in weights.items()
            if not k.startswith("backbone.")
        }
        with atomic_path(path / "vision.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_json(path / "vlm_config.json", asdict(self.config))
        apply_default_modes(path)  # save_pretrained writes 0600 safetensors


def asdict_tensors(batch: Batch) -> list[torch.Tensor]:
    return [batch.input_ids, batch.labels, batch.image_mask, batch.example_index, batch.attention_mask]


def build_pruner(k: int | None, dim: int, connector: str) -> nn.Module | None:
    if k is None:
        return None
    if connector.startswith("vss-"):
        raise UserError("token pruning breaks the patch grid that the vss-* connectors scan; use --connector mlp")
    try:
        from .pruning import SaliencyPruner
    except ImportError as exc:
        raise UserError(f"token pruning is unavailable: {exc}") from None
    return SaliencyPruner(dim, k)


def enable_fast_path(model: nn.Module, family: str) -> str | None:
    """Switch a Mamba backbone to the fast CPU/GPU scan when the helper module exists; report which path."""
    if not has_ssm_layers(family):
        return None
    from probes.ssm.patch import enable_fast_path as enable

    return enable(model)


def build_vlm(
    *,
    backbone: str,
    encoder: str,
    connector: str,
    tokenizer: PreTrainedTokenizerBase,
    resolution: int | None = None,
    encoder_weights: str | None = None,
    encoder_overrides: dict[str, Any] | None = None,
    prune_k: int | None = None,
    task_aware: bool | str = False,
    seed: int = 0,
) -> VLM:
    """A fresh VLM: backbone + 2 new embedding rows (``##``, ``&&``), encoder, connector, optional pruner."""
    enc = build_encoder(encoder, resolution=resolution, weights=encoder_weights, overrides=encoder_overrides, seed=seed)
    bb = load_backbone(backbone, seed=seed)
    if len(tokenizer) > bb.vocab_size:
        raise UserError(f"tokenizer has {len(tokenizer)} entries but backbone {backbone} only {bb.vocab_size} rows")
    first = add_tokens(bb.model, 2, "mean", seed)
    torch.manual_seed(seed + 1)
    conn = build_connector(connector, enc.out_dim, bb.hidden_size, enc.grid)
    pruner = build_pruner(prune_k, enc.out_dim, connector)
    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else eos
    cfg = VLMConfig(
        backbone=backbone,
        family=bb.family,
        encoder=enc.name,
        connector=connector,
        resolution=enc.resolution,
        image_open_id=first,
        row_sep_id=first + 1,
        eos_id=eos,
        pad_id=pad,
        task_aware=task_aware,
        prune_k=prune_k,
        encoder_overrides=dict(encoder_overrides or {}),
    )
    return VLM(cfg, enc, conn, bb.model, tokenizer, pruner)


def load_vlm(path: str | Path, *, resolution: int | None = None) -> VLM:
    """Load a checkpoint directory written by :meth:`VLM.save`.

    ``resolution`` overrides the encoder input size (position embeddings are interpolated: the learned
    table is resampled for timm / tiny, CLIP interpolates at run time). A damaged checkpoint (unreadable
    ``vlm_config.json``, truncated ``vision.safetensors``) is one :class:`UserError` line, not a traceback."""
    path = Path(path)
    try:
        return _load_vlm(path, resolution)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        text = str(exc).strip()
        raise UserError(f"{path} is not a usable VLM checkpoint: {text.splitlines()[0] if text else type(exc).__name__}") from None
    except Exception as exc:  # SafetensorError (truncated weights) is none of the above
        if type(exc).__name__ != "SafetensorError":
            raise
        raise UserError(f"{path}/vision.safetensors cannot be read: {str(exc).splitlines()[0]}") from None


def _load_vlm(path: Path, resolution: int | None) -> VLM:
    cfg_file = path / "vlm_config.json"
    if not cfg_file.is_file():
        raise UserError(f"{path} is not a VLM checkpoint (no vlm_config.json)")
    try:
        raw = json.loads(cfg_file.read_text())
    except ValueError:
        raise UserError(f"{cfg_file} is not valid JSON") from None
    if not isinstance(raw, dict):
        raise UserError(f"{cfg_file} is not a JSON object")
    cfg = VLMConfig.from_dict(raw)
    tok = load_tokenizer(path / "tokenizer")
    if cfg.encoder == "clip-l14-336":
        from transformers import CLIPVisionConfig

        enc: VisionEncoder = ClipEncoder(cfg.resolution, None, config=CLIPVisionConfig.from_pretrained(path / "encoder_config"))
        enc.requires_grad_(False).eval()
    else:
        enc = build_encoder(cfg.encoder, resolution=cfg.resolution, overrides=cfg.encoder_overrides)
    bb = load_backbone(str(path / "backbone"))
    conn = build_connector(cfg.connector, enc.out_dim, bb.hidden_size, enc.grid)
    pruner = build_pruner(cfg.prune_k, enc.out_dim, cfg.connector)
    vlm = VLM(cfg, enc, conn, bb.model, tok, pruner)
    state = load_file(str(path / "vision.safetensors"))
    missing, unexpected = vlm.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise UserError(f"{path}/vision.safetensors does not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if resolution and resolution != cfg.resolution:
        vlm.set_resolution(resolution)
    return vlm
