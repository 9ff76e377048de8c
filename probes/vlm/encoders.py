"""Vision encoders: EVA-02 L/14-336 (timm), CLIP ViT-L/14-336 (transformers), and an offline tiny one.

Every encoder maps ``pixel_values [B, 3, R, R]`` to patch features ``[B, N, D]`` from its last layer with
the class token dropped (N = (R / patch)², 576 at 336 px). Pretrained encoders are frozen and load weights
only from local files (no hub). A resolution other than the pretraining one (448, 560) interpolates the
position embeddings: timm resamples the absolute table when loading weights into a model built with the
new ``img_size`` (rotary embeddings follow the grid), CLIP uses ``interpolate_pos_encoding=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from probes.errors import UserError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EVA_TIMM_NAME = "eva02_large_patch14_clip_336"
ENCODERS = ("eva02-l14-336", "clip-l14-336", "tiny")
DEFAULT_RESOLUTION = {"eva02-l14-336": 336, "clip-l14-336": 336, "tiny": 84}


class VisionEncoder(nn.Module):
    """Common interface: ``forward(pixel_values) -> [B, N, out_dim]`` and the patch grid at ``resolution``."""

    name: str
    out_dim: int
    patch_size: int
    resolution: int
    trainable: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def grid(self) -> tuple[int, int]:
        g = self.resolution // self.patch_size
        return (g, g)

    def set_resolution(self, resolution: int) -> None:
        """Run at another input size; position embeddings are interpolated in forward."""
        if resolution % self.patch_size:
            raise UserError(f"resolution {resolution} is not a multiple of the patch size {self.patch_size}")
        self.resolution = resolution

    @property
    def n_patches(self) -> int:
        h, w = self.grid
        return h * w


class TimmEva02Encoder(VisionEncoder):
    def __init__(self, resolution: int, weights: str | None, overrides: dict[str, Any]) -> None:
        super().__init__()
        import timm

        # dynamic_img_size: the absolute table is resampled (and the rotary grid recomputed) per input size,
        # so one model serves 336 / 448 / 560 after set_resolution.
        kwargs: dict[str, Any] = {"img_size": resolution, "num_classes": 0, "dynamic_img_size": True, **overrides}
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise UserError(f"EVA-02 weights file not found: {weights}")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        try:
            self.model = timm.create_model(EVA_TIMM_NAME, pretrained=bool(weights), **kwargs)
        except (RuntimeError, TypeError) as exc:
            raise UserError(f"cannot build EVA-02 ({weights or 'random init'}): {str(exc).splitlines()[0]}") from None
        self.name, self.resolution = "eva02-l14-336", resolution
        self.out_dim = int(self.model.embed_dim)
        self.patch_size = int(self.model.patch_embed.patch_size[0])
        self.mean, self.std, self.trainable = CLIP_MEAN, CLIP_STD, False

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(pixel_values)  # last block + final norm
        return feats[:, self.model.num_prefix_tokens :]


class ClipEncoder(VisionEncoder):
    def __init__(self, resolution: int, weights: str | None, config: Any = None) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        if config is not None:  # architecture only; weights come from the VLM checkpoint
            self.model = CLIPVisionModel(config)
        elif not weights or not Path(weights).is_dir():
            raise UserError("the clip-l14-336 encoder needs --encoder-weights DIR (a local CLIPVisionModel directory)")
        else:
            self._load(weights)
        cfg = self.model.config
        self.name, self.resolution = "clip-l14-336", resolution
        self.out_dim, self.patch_size = int(cfg.hidden_size), int(cfg.patch_size)
        self.mean, self.std, self.trainable = CLIP_MEAN, CLIP_STD, False

    def _load(self, weights: str) -> None:
        from transformers import CLIPVisionModel

        try:
            self.model = CLIPVisionModel.from_pretrained(weights)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load CLIP vision weights from {weights}: {str(exc).splitlines()[0]}") from None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values, interpolate_pos_encoding=True)
        return out.last_hidden_state[:, 1:]  # drop CLS


class TinyPatchEncoder(VisionEncoder):
    """Offline trainable encoder: conv patchify + learned positions + a few pre-norm transformer layers."""

    def __init__(self, resolution: int, dim: int = 64, depth: int = 2, heads: int = 4, patch_size: int = 14) -> None:
        super().__init__()
        self.name, self.resolution, self.out_dim, self.patch_size = "tiny", resolution, dim, patch_size
        self.mean, self.std, self.trainable = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True
        self.patchify = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        g = resolution // patch_size
        self.pos = nn.Parameter(torch.randn(1, dim, g, g) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patchify(pixel_values)
        pos = self.pos if self.pos.shape[-2:] == x.shape[-2:] else F.interpolate(self.pos, size=x.shape[-2:], mode="bicubic", align_corners=False)
        x = (x + pos).flatten(2).transpose(1, 2)
        return self.norm(self.blocks(x))


def build_encoder(
    name: str,
    *,
    resolution: int | None = None,
    weights: str | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
) -> VisionEncoder:
    """Build a named encoder (see module docstring); frozen unless trainable by design (``tiny``)."""
    if name == EVA_TIMM_NAME:
        name = "eva02-l14-336"
    if name not in ENCODERS:
        raise UserError(f"unknown vision encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    res = resolution or DEFAULT_RESOLUTION[name]
    overrides = dict(overrides or {})
    torch.manual_seed(seed)
    enc: VisionEncoder
    if name == "eva02-l14-336":
        enc = TimmEva02Encoder(res, weights, overrides)
    elif name == "clip-l14-336":
        if overrides:
            raise UserError("clip-l14-336 takes its shape from the weights directory, not overrides")
        enc = ClipEncoder(res, weights)
    else:
        enc = TinyPatchEncoder(res, **overrides)
    if res % enc.patch_size:
        raise UserError(f"resolution {res} is not a multiple of the patch size {enc.patch_size}")
    if not enc.trainable:
        enc.requires_grad_(False)
        enc.eval()
    return enc
