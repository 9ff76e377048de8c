"""Image geometry shared by training and evaluation: letterbox to a square, pixel tensors, boxes as text.

LLaVA-1.5 pads an image to a square (centred, background = the encoder's mean colour) before resizing, so
the whole image is seen without distortion. A box is normalised on that *model input* image: pixel
coordinates are shifted by the padding offset and divided by the padded side, then written with two
decimals, ``[x1, y1, x2, y2]`` (README "VLM module").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from probes.errors import UserError

_BOX_RE = re.compile(r"\[\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*\]")


@dataclass(frozen=True)
class Letterbox:
    """Where an original ``width × height`` image sits inside its padded square of side ``side``."""

    width: int
    height: int

    @property
    def side(self) -> int:
        return max(self.width, self.height)

    @property
    def offset(self) -> tuple[int, int]:
        return ((self.side - self.width) // 2, (self.side - self.height) // 2)


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise a one-line UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image {path}: {type(exc).__name__}") from None


def to_square(img: Image.Image, fill: tuple[float, float, float]) -> Image.Image:
    """Pad to a centred square with ``fill`` (RGB in [0, 1]) — LLaVA-1.5's ``expand2square``."""
    box = Letterbox(*img.size)
    if img.size[0] == img.size[1]:
        return img
    canvas = Image.new("RGB", (box.side, box.side), tuple(int(round(255 * c)) for c in fill))
    canvas.paste(img, box.offset)
    return canvas


def pixel_tensor(
    img: Image.Image, resolution: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Letterbox, resize (bicubic) to ``resolution``², normalise: a float32 ``[3, R, R]`` tensor."""
    sq = to_square(img, (mean[0], mean[1], mean[2])).resize((resolution, resolution), Image.Resampling.BICUBIC)
    data = torch.frombuffer(bytearray(sq.tobytes()), dtype=torch.uint8).view(resolution, resolution, 3)
    x = data.permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def check_box(box: list[float] | tuple[float, ...], width: int, height: int, where: str = "") -> None:
    """A pixel box ``[x1, y1, x2, y2]`` must have positive area and lie inside the image."""
    ctx = f" ({where})" if where else ""
    if len(box) != 4:
        raise UserError(f"box must have 4 numbers, got {len(box)}{ctx}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise UserError(f"bad box {list(box)}: need x2 > x1 and y2 > y1{ctx}")
    tol = 1.0  # COCO boxes may exceed the border by rounding
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise UserError(f"bad box {list(box)}: outside the {width}x{height} image{ctx}")


def normalise_box(box: list[float] | tuple[float, ...], width: int, height: int) -> list[float]:
    """Pixel ``[x1, y1, x2, y2]`` on the original image → [0, 1] coordinates on the letterboxed input."""
    check_box(box, width, height)
    lb = Letterbox(width, height)
    ox, oy = lb.offset
    x1, y1, x2, y2 = (float(v) for v in box)
    return [
        min(max((x1 + ox) / lb.side, 0.0), 1.0),
        min(max((y1 + oy) / lb.side, 0.0), 1.0),
        min(max((x2 + ox) / lb.side, 0.0), 1.0),
        min(max((y2 + oy) / lb.side, 0.0), 1.0),
    ]


def format_box(norm_box: list[float], decimals: int = 2) -> str:
    """``[0.12, 0.30, 0.56, 0.78]``: two decimals by default, comma-space separated."""
    return "[" + ", ".join(f"{v:.{decimals}f}" for v in norm_box) + "]"


def box_text(box: list[float] | tuple[float, ...], width: int, height: int, decimals: int = 2) -> str:
    return format_box(normalise_box(box, width, height), decimals)


def parse_box(text: str) -> list[float] | None:
    """The first ``[x1, y1, x2, y2]`` in ``text`` (normalised coordinates), or None."""
    m = _BOX_RE.search(text)
    return [float(g) for g in m.groups()] if m else None


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
