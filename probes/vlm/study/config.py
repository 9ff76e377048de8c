"""Options of ``probes vlm study`` and their checks (every user mistake fails here, before any output).

Default world, designed so that grounding can be learned by a 2-layer, 64-wide LM trained from random
weights (README "The offline study" says why each knob is set):
a square 96×96 canvas (no letterbox padding: the objects cover more of the 6×6 patch grid), two objects
per image of 40-50 % of the side, boxes written with one decimal, grounding sequences repeated in the
stage-2 mix, and a short stage 1. Stage-2 lr is 3e-3 rather than SPEC's 2e-5: the tiny presets start from
random weights (in exploration 1e-3 learned grounding about half as well in the same steps).

Default schedule: sized so that the 24 arms (2 backbones × 3 orders × 4 seeds) fit the README's CPU budget
(batch 4, because the chunked Mamba scan on CPU costs more per sample at larger batches; 400 stage-2 steps).
At that size the arms do not learn grounding (README "The offline study" has the numbers); the earlier
1800-step, batch-16 schedule did, with 8 arms and the encoder trained inside every arm.

As the paper runs it (§3.2: one vision encoder, kept frozen): the tiny encoder is trained once, in a shared
``encoder`` stage (``encoder_steps`` steps of captioning with the first backbone, encoder and LM trainable),
and every arm starts from it frozen. Orders default to task-agnostic, task-aware and the distance-matched
task-agnostic control (``matched``, :mod:`probes.vlm.sequence`), four seeds per arm.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from probes.errors import UserError

from ..sequence import ORDERS

WORLD_TASKS = ("grounding", "captioning", "vqa")  # what the synthetic world provides (no mc / POPE files)
SPLITS = ("val", "test")


@dataclass(frozen=True)
class StudyConfig:
    backbones: tuple[str, ...] = ("pythia-tiny", "mamba-tiny")
    variants: tuple[str, ...] = ("agnostic", "aware", "matched")
    tasks: tuple[str, ...] = WORLD_TASKS
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    n_images: int = 1400
    world_seed: int = 0
    width: int = 96
    height: int = 96
    objects: tuple[int, int] = (2, 2)
    size: tuple[float, float] = (0.4, 0.5)
    layout: str = "free"
    box_decimals: int = 1
    encoder: str = "tiny"
    connector: str = "mlp"
    encoder_steps: int = 1000  # the shared encoder stage (captions; see the module docstring)
    stage1_steps: int = 20
    stage2_steps: int = 400
    batch_size: int = 4
    stage1_lr: float = 1e-3
    stage2_lr: float = 3e-3
    grounding_repeats: int = 4  # stage-2 task_repeats for grounding (see probes.vlm.train_config)
    loss_norm: str = "sequence"
    max_length: int = 1024
    split: str = "test"
    eval_batch_size: int = 50
    threads: int = 1  # torch threads per process (numbers depend on it; see the driver)
    workers: int = 2  # stages run in parallel processes (numbers do not depend on it)

    def validate(self) -> None:
        from probes.models.registry import family_of, load_config

        from ..connector import CONNECTORS
        from ..data.world import WorldSpec
        from ..packing import LOSS_NORMS

        if not self.backbones:
            raise UserError("--backbones must name at least one backbone")
        if len(set(self.backbones)) != len(self.backbones):
            raise UserError("--backbones lists a backbone twice")
        for b in self.backbones:
            family_of(load_config(b))  # unknown names fail here, before anything is written
        for v in self.variants:
            if v not in ORDERS:
                raise UserError(f"unknown variant {v!r}; choose from {', '.join(ORDERS)}")
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise UserError("--variants must name each order at most once")
        for t in self.tasks:
            if t not in WORLD_TASKS:
                raise UserError(f"the synthetic world has no {t!r} benchmark; choose from {', '.join(WORLD_TASKS)}")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise UserError("--tasks must name at least one task, each once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise UserError("--seeds must name distinct non-negative integers")
        if self.encoder != "tiny":
            raise UserError("the study runs offline: only the tiny (trainable) encoder is supported")
        if self.connector not in CONNECTORS:
            raise UserError(f"unknown connector {self.connector!r}; choose one of {', '.join(CONNECTORS)}")
        if self.loss_norm not in LOSS_NORMS:
            raise UserError(f"--loss-norm must be one of {', '.join(LOSS_NORMS)}")
        if self.split not in SPLITS:
            raise UserError(f"--split must be one of {', '.join(SPLITS)}")
        need = 10 if self.split == "test" else 9  # image i is train/val/test by i % 10 (8/1/1)
        if self.n_images < need:
            raise UserError(f"--n-images must be at least {need} so the {self.split} split has an image")
        if self.width < 48 or self.height < 48:
            raise UserError("the canvas must be at least 48x48 pixels")
        WorldSpec(self.objects, self.size, self.box_decimals, self.layout).check()
        if not 1 <= self.grounding_repeats <= 100:
            raise UserError("--grounding-repeats must be between 1 and 100")
        for name in ("encoder_steps", "stage1_steps", "stage2_steps", "batch_size", "eval_batch_size", "threads", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.stage1_lr <= 0 or self.stage2_lr <= 0:
            raise UserError("learning rates must be positive")

    def command(self, out: Path, runs: Path) -> str:
        """The full command line that reproduces this study (every option spelled out)."""
        args = ["probes", "vlm", "study", "--out", str(out), "--runs", str(runs),
                "--models", ",".join(self.backbones), "--variants", ",".join(self.variants),
                "--tasks", ",".join(self.tasks), "--seeds", ",".join(map(str, self.seeds)),
                "--n-images", str(self.n_images), "--world-seed", str(self.world_seed),
                "--canvas", f"{self.width}x{self.height}", "--objects", f"{self.objects[0]}-{self.objects[1]}",
                "--size", f"{self.size[0]:g}-{self.size[1]:g}", "--box-decimals", str(self.box_decimals),
                "--layout", self.layout, "--grounding-repeats", str(self.grounding_repeats),
                "--connector", self.connector, "--encoder-steps", str(self.encoder_steps),
                "--stage1-steps", str(self.stage1_steps), "--stage2-steps", str(self.stage2_steps),
                "--batch-size", str(self.batch_size), "--stage1-lr", repr(self.stage1_lr),
                "--stage2-lr", repr(self.stage2_lr), "--loss-norm", self.loss_norm,
                "--max-length", str(self.max_length),
                "--split", self.split, "--eval-batch-size", str(self.eval_batch_size),
                "--threads", str(self.threads), "--workers", str(self.workers)]  # fmt: skip
        return shlex.join(args)
