"""Where a study keeps its files, and the ``--resume`` / ``--overwrite`` rules.

``OUT`` (committed): ``study.json``, ``README.md``, the report, ``prior/<task>/`` and
``evals/<backbone>-<order>-s<seed>/<task>/``. ``RUNS`` (not committed): the world, the shared encoder run
(``encoder/``, one for the whole study), stage-1 runs (one per backbone × seed, shared by every order, since
stage 1 is always task-agnostic) and stage-2 runs (one per backbone × order × seed).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from probes.errors import UserError

from .config import StudyConfig

RUNS_MARKER = "study-runs.json"


def slug(name: str) -> str:
    return Path(name).name if Path(name).is_dir() else name.replace("/", "--")


@dataclass(frozen=True)
class Layout:
    out: Path
    runs: Path

    @property
    def world(self) -> Path:
        return self.runs / "world"

    @property
    def encoder(self) -> Path:
        return self.runs / "encoder"

    def stage1_dir(self, backbone: str, seed: int) -> Path:
        return self.runs / f"{slug(backbone)}-s{seed}" / "stage1"

    def stage2_dir(self, backbone: str, variant: str, seed: int) -> Path:
        return self.runs / f"{slug(backbone)}-{variant}-s{seed}" / "stage2"

    def arm(self, backbone: str, variant: str, seed: int) -> str:
        return f"{slug(backbone)}-{variant}-s{seed}"

    def eval_dir(self, backbone: str, variant: str, seed: int, task: str) -> Path:
        return self.out / "evals" / self.arm(backbone, variant, seed) / task

    def prior_dir(self, task: str) -> Path:
        return self.out / "prior" / task


def non_empty(p: Path) -> bool:
    return p.is_dir() and any(p.iterdir())


def config_json(cfg: StudyConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


def prepare_dirs(cfg: StudyConfig, layout: Layout, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check ``--resume`` / ``--overwrite`` against what is on disk; returns the saved record when resuming."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    record_path = layout.out / "study.json"
    if layout.out.exists() and not layout.out.is_dir():
        raise UserError(f"--out {layout.out} is a file, not a directory")
    if resume:
        if not record_path.is_file():
            if non_empty(layout.out):
                raise UserError(f"{layout.out} has no study.json: nothing to resume (choose another --out)")
            return None
        saved = json.loads(record_path.read_text())
        if saved.get("config") != config_json(cfg):
            raise UserError(f"{layout.out} holds a study with a different config; resume with the same options or use --overwrite")
        if saved.get("runs") != str(layout.runs):
            raise UserError(f"{layout.out} was run with --runs {saved.get('runs')}; resume with the same --runs")
        return saved
    for d, marker in ((layout.out, "study.json"), (layout.runs, RUNS_MARKER)):
        if not non_empty(d):
            continue
        if not overwrite:
            raise UserError(f"{d} exists and is not empty; pass --resume to continue it or --overwrite to replace it")
        if not (d / marker).is_file():
            raise UserError(f"refusing to --overwrite {d}: it has no {marker}, so it is not a study directory")
    for d in (layout.out, layout.runs):
        if non_empty(d):
            shutil.rmtree(d)
    return None
