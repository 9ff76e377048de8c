"""Checkpoints for exact resume: weights (safetensors), optimizer state, loop state.

A checkpoint is written into ``checkpoint.new/`` and swapped in with renames, so an interruption at any
moment leaves either the previous or the new checkpoint complete (``checkpoint.old`` is the fallback).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

CKPT, NEW, OLD = "checkpoint", "checkpoint.new", "checkpoint.old"


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    new, cur, old = run_dir / NEW, run_dir / CKPT, run_dir / OLD
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    save_model(model, str(new / "model.safetensors"))
    torch.save(optimizer.state_dict(), new / "optimizer.pt")
    (new / "state.json").write_text(json.dumps(state))
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        cur.rename(old)
    new.rename(cur)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(run_dir: Path) -> Path | None:
    for name in (CKPT, OLD):
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> dict[str, Any]:
    ckpt = checkpoint_dir(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    load_model(model, str(ckpt / "model.safetensors"), device=str(device))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    return json.loads((ckpt / "state.json").read_text())
