"""Light reads of a run directory shared by the trainers, the launchers and ``probes status`` (no torch).

``probes status`` and the launchers' re-launch rule must not import torch, so what they need to know about a
run directory's layout lives here: which entries are content (not the writer lock, not a dead writer's
temporary files), whether it holds a checkpoint, and how two configurations differ field by field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.io import is_stale_temp
from probes.runfiles import CHECKPOINT, CHECKPOINT_OLD, CONFIG, METRICS, SUMMARY

from .lock import LOCK_FILE

CHECKPOINT_DIRS = (CHECKPOINT, CHECKPOINT_OLD)
RUN_FILES = (CONFIG, SUMMARY, METRICS, LOCK_FILE, *CHECKPOINT_DIRS)


def is_run_dir(path: Path) -> bool:
    """True for a directory a trainer has written (or locked): ``probes status /etc`` lists nothing."""
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


def own_entries(run_dir: Path) -> list[Path]:
    """What the run directory holds besides the lock file and stale temporary files."""
    if not run_dir.is_dir():
        return []
    return [p for p in run_dir.iterdir() if p.name != LOCK_FILE and not is_stale_temp(p)]


def has_content(run_dir: Path) -> bool:
    return bool(own_entries(run_dir))


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` → ``{"train.lr": 1}`` (tuples as lists, so JSON round trips compare equal)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flatten(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def config_differences(saved: dict[str, Any], current: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``["train.lr: 0.0001 in the run, 0.001 now", …]`` for every field that differs."""
    a, b = flatten(saved), flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ignore or a.get(key, "<absent>") == b.get(key, "<absent>"):
            continue
        out.append(f"{key}: {a.get(key, '<absent>')!r} in the run, {b.get(key, '<absent>')!r} now")
    return out


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None




def check_resume_matches(planned: list[tuple[Path, dict[str, Any]]]) -> None:
    """``--resume`` when none of the planned runs exists: one line naming the closest existing run of the
    same folder and the fields in which it differs (a different ``--lr`` names another run directory, so
    resuming would otherwise silently start a new run). ``planned``: (run directory, config dict) pairs."""
    if not planned or any(has_content(run_dir) for run_dir, _ in planned):
        return
    best: tuple[int, str, list[str]] | None = None
    for run_dir, config in planned:
        parent = run_dir.parent
        siblings = sorted(parent.iterdir()) if parent.is_dir() else []
        for other in siblings:
            saved = read_json_or_none(other / CONFIG) if other.is_dir() else None
            if saved is None:
                continue
            diffs = config_differences(saved, config, ignore=("model.family", "model.n_params", "run_name"))
            if best is None or len(diffs) < best[0]:
                best = (len(diffs), other.name, diffs)
    where = planned[0][0].parent
    closest = "" if best is None else f" (closest: {best[1]}, which differs in {'; '.join(best[2][:4])})"
    raise UserError(
        f"--resume: no existing run under {where} matches these options{closest}; "
        "drop --resume to start new runs"
    )
