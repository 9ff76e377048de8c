"""Writing a self-describing run directory (schema in docs/CONTRACTS.md); analysis reads it back.

Every file is replaced atomically; ``metrics.jsonl`` is append-only and, on resume, cut back to the last
checkpoint so that a resumed run's metrics are identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from probes.errors import UserError
from probes.io import atomic_path, atomic_write_json, ensure_writable_dir

CHECKPOINT = "checkpoint"


def prepare(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Create ``run_dir``; return True when an existing checkpoint should be resumed."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    exists = run_dir.exists() and any(run_dir.iterdir()) if run_dir.is_dir() else run_dir.exists()
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} exists and is not a directory")
    if exists and not (resume or overwrite):
        raise UserError(f"run directory {run_dir} exists; pass --resume to continue it or --overwrite to replace it")
    if exists and overwrite:
        shutil.rmtree(run_dir)
    ensure_writable_dir(run_dir)
    if resume and not any((run_dir / d / "state.json").is_file() for d in (CHECKPOINT, CHECKPOINT + ".old")):
        if exists:
            raise UserError(f"cannot resume {run_dir}: it has no complete checkpoint; use --overwrite")
        return False
    return resume


def environment(device: torch.device, mamba_path: str | None, dtype: str) -> dict[str, Any]:
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": name,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "mamba_path": mamba_path,
    }


class RunWriter:
    """Appends metrics and rewrites the per-position matrix and summary of one run."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.metrics = run_dir / "metrics.jsonl"
        self.acc_rows: list[list[float]] = []
        self.count_rows: list[list[int]] = []
        self.steps: list[int] = []

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.dir / name, obj)

    def append(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def add_eval(self, record: dict[str, Any], counts: list[int]) -> None:
        self.append(record)
        self.acc_rows.append(record["per_position_acc"])
        self.count_rows.append(counts)
        self.steps.append(record["step"])
        self._write_matrix()

    def _write_matrix(self) -> None:
        tensors = {
            "accuracy": torch.tensor(self.acc_rows, dtype=torch.float32),
            "step": torch.tensor(self.steps, dtype=torch.int64),
            "count": torch.tensor(self.count_rows, dtype=torch.int64),
        }
        with atomic_path(self.dir / "per_position.safetensors") as tmp:
            save_file(tensors, str(tmp))

    def truncate_to(self, step: int) -> None:
        """Drop metric lines after ``step`` (they are recomputed by the resumed run) and reload evals."""
        lines = self.metrics.read_text().splitlines() if self.metrics.exists() else []
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= step]
        with atomic_path(self.metrics) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in kept))
        self.acc_rows, self.count_rows, self.steps = [], [], []
        for ln in kept:
            rec = json.loads(ln)
            if rec["kind"] == "eval":
                self.acc_rows.append(rec["per_position_acc"])
                self.count_rows.append(rec["per_position_count"])
                self.steps.append(rec["step"])
        if self.steps:
            self._write_matrix()
