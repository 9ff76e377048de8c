"""Checkpoints for exact resume, shared by the probe trainer and the VLM trainer (README "Run-directory integrity").

Layout: ``checkpoint/`` (newest) and ``checkpoint.old/`` (the one before; ``checkpoint.old2/`` … when more
are kept, ``save_total_limit``), each holding accelerate's
``save_state`` files (weights as safetensors, sharded under FSDP; optimizer; per-process RNG) and ``state.json`` (step, data cursor, RNG states, and the size of every
file of the checkpoint). A new checkpoint is written into ``checkpoint.new/``; ``state.json`` is written last
and the directories are rotated with renames, so an interruption at any moment leaves at least one complete
checkpoint, and the last two are kept.

On resume each candidate is *verified* before it is used: every file listed in ``state.json`` must exist with
its recorded size and every ``*.safetensors`` must have a well-formed header whose tensors end exactly at the
end of the file. A truncated or missing file (a disk that filled up, a copy cut short) therefore fails
verification and the older checkpoint is used instead, and the caller says so. File sizes and headers catch
truncation, not bit flips: hashing multi-GB optimizer states at every 1% of the budget would cost minutes.

RNG states (torch CPU, every CUDA device, Python ``random``, numpy) are stored as JSON in ``state.json``, so a
model with dropout resumes bit-exactly. Nothing here unpickles: the optimizer state is read with
``torch.load(weights_only=True)``.

What ``--resume`` does with a run directory is decided here, once, by :func:`resume_point`, for every entry
point: ``probes synth --resume`` (:func:`probes.train.rundir.prepare`), the launchers' re-launch rule
(:func:`probes.launch.jobs.decide`), ``probes vlm train`` and ``probes status`` (which says what ``--resume``
will do). A run that holds no checkpoint at all (stopped before its first step, or killed while writing its
first checkpoint) lost nothing that a checkpoint could give back, so resuming it starts it again from step 0
with the same config (README "Run-directory integrity"). torch and numpy are imported only where RNG states
are read or set, so ``probes status`` can apply the rule without importing torch.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.errors import UserError
from probes.io import apply_default_modes, atomic_write_json
from probes.runfiles import CHECKPOINT, CHECKPOINT_OLD, STATE, SUMMARY

if TYPE_CHECKING:
    import torch

CKPT, NEW, OLD = CHECKPOINT, CHECKPOINT + ".new", CHECKPOINT_OLD


# --- RNG states -------------------------------------------------------------------------------------------
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    import torch

    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from (dropout, sampling), as JSON."""
    import numpy as np
    import torch

    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": _b64(torch.get_rng_state()),
        "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(_unb64(state["torch"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_unb64(s) for s in cuda])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# --- verification -----------------------------------------------------------------------------------------
def file_sizes(ckpt: Path) -> dict[str, int]:
    """Size of every file of a checkpoint directory except ``state.json`` (relative paths)."""
    return {
        str(p.relative_to(ckpt)): p.stat().st_size
        for p in sorted(ckpt.rglob("*"))
        if p.is_file() and p.name != STATE
    }


def safetensors_problem(path: Path) -> str | None:
    """None when ``path`` has a valid safetensors header and its data ends exactly at the end of the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is {size} bytes, shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{path.name} is truncated (header of {n} bytes, file of {size})"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        return f"{path.name} has no readable safetensors header ({exc})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        return f"{path.name} is truncated ({size} of {expected} bytes)"
    return None


def verify(ckpt: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)`` for a complete checkpoint, ``(None, why not)`` otherwise."""
    try:
        state = json.loads((ckpt / STATE).read_text())
    except OSError as exc:
        return None, f"{STATE} cannot be read ({exc.strerror or exc})"
    except ValueError:
        return None, f"{STATE} is not valid JSON"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return None, f"{STATE} has no step"
    for name, size in (state.get("files") or {}).items():
        path = ckpt / name
        if not path.is_file():
            return None, f"{name} is missing"
        if path.stat().st_size != size:
            return None, f"{name} is {path.stat().st_size} bytes, {size} were written"
    for path in sorted(ckpt.rglob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            return None, problem
    return state, None


def older(n: int) -> str:
    """The name of the n-th checkpoint before the newest: ``checkpoint.old``, ``checkpoint.old2``, …"""
    return OLD if n == 1 else f"{OLD}{n}"


def _age(name: str) -> int | None:
    """0 for ``checkpoint``, n for :func:`older` (n), None for anything else (``checkpoint.new`` too)."""
    if name == CKPT:
        return 0
    rest = name.removeprefix(OLD)
    if rest == name:
        return None
    return 1 if rest == "" else (int(rest) if rest.isdigit() and int(rest) > 1 else None)


def candidates(run_dir: Path) -> list[Path]:
    """Checkpoint directories to try, newest first (a half-written ``checkpoint.new/`` is never one)."""
    if not run_dir.is_dir():
        return []
    found = [(age, p) for p in run_dir.iterdir() if (age := _age(p.name)) is not None and p.is_dir()]
    return [p for _, p in sorted(found)]


def remove_all(run_dir: Path) -> None:
    """Remove every checkpoint (a finished run with ``save_final`` off keeps its metrics, not its weights)."""
    for ckpt in reversed(candidates(run_dir)):
        shutil.rmtree(ckpt, ignore_errors=True)


# --- the resume rule --------------------------------------------------------------------------------------
FRESH, CONTINUE, RESTART, REFUSE, FINISHED = "fresh", "continue", "restart", "refuse", "finished"


@dataclass(frozen=True)
class ResumePoint:
    """What ``--resume`` (and a launcher, and ``probes vlm train``) does with a run directory.

    ``fresh``: nothing there yet; ``finished``: the run ended (its summary says so; it may keep no checkpoint,
    ``--no-save-final``), nothing to train; ``continue``: from the newest checkpoint that verifies, at ``step``;
    ``restart``: the run started but holds no checkpoint (stopped before its first step, or killed while
    writing the first one), so it starts again from step 0 with the same config; ``refuse``: checkpoints
    exist but none verifies (``why``): continuing would silently lose trained steps."""

    action: str
    step: int = 0
    source: str | None = None  # the checkpoint directory continued from
    why: str | None = None  # refuse: what is wrong with each checkpoint

    @property
    def resumable(self) -> bool:
        """``--resume`` will train it (from a checkpoint or from step 0)."""
        return self.action in (CONTINUE, RESTART)

    def hint(self) -> str:
        """What ``--resume`` will do, for ``probes status`` (one short clause)."""
        if self.action == CONTINUE:
            return f"--resume continues from step {self.step}"
        if self.action == RESTART:
            return "no complete checkpoint: --resume restarts it from step 0"
        if self.action == REFUSE:
            return f"no checkpoint verifies ({self.why}): --resume refuses; --overwrite starts over"
        if self.action == FINISHED:
            return "finished: --resume leaves it as it is"
        return "--resume starts it"


def resume_point(run_dir: Path) -> ResumePoint:
    """The one resume rule (see the module docstring); reads ``state.json`` files and headers only."""
    from .layout import has_content, read_json_or_none

    summary = read_json_or_none(run_dir / SUMMARY)
    if summary is not None and summary.get("status") == "finished":
        return ResumePoint(FINISHED, int(summary.get("steps_done") or 0))
    failures = []
    for ckpt in candidates(run_dir):
        state, why = verify(ckpt)
        if state is not None:
            return ResumePoint(CONTINUE, int(state["step"]), ckpt.name)
        failures.append(f"{ckpt.name}/: {why}")
    if failures:
        return ResumePoint(REFUSE, why="; ".join(failures))
    return ResumePoint(RESTART if has_content(run_dir) else FRESH)


# --- writing ----------------------------------------------------------------------------------------------
def begin(run_dir: Path) -> Path:
    """An empty ``checkpoint.new/`` (a leftover of a killed writer is removed first)."""
    new = run_dir / NEW
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    return new


def finish(run_dir: Path, state: dict[str, Any], keep: int = 2) -> None:
    """Write ``state.json`` (with file sizes and RNG states) into ``checkpoint.new/`` and rotate it in, keeping
    ``keep`` checkpoints (HF's ``save_total_limit``): ``checkpoint`` becomes ``checkpoint.old``, that one
    ``checkpoint.old2`` …, and the oldest beyond ``keep`` is deleted. Every rename happens after the new
    checkpoint is complete, and older ones are deleted only after it is in place, so at any moment the newest
    complete checkpoint exists under one of these names (with ``keep=1`` there is no older one to fall back
    to when the newest is later damaged)."""
    new, cur = run_dir / NEW, run_dir / CKPT
    apply_default_modes(new)
    atomic_write_json(new / STATE, {**state, "rng": rng_state(), "files": file_sizes(new)})
    if cur.exists():  # shift every older one by one name, oldest first, then the newest to checkpoint.old
        olds = [p for p in candidates(run_dir) if p != cur]
        for pos in range(len(olds), 0, -1):
            if olds[pos - 1].name != older(pos + 1):
                olds[pos - 1].rename(run_dir / older(pos + 1))
        cur.rename(run_dir / OLD)
    new.rename(cur)
    for ckpt in candidates(run_dir)[keep:]:
        shutil.rmtree(ckpt, ignore_errors=True)


def abandon(run_dir: Path) -> None:
    """Remove a half-written ``checkpoint.new/`` (after a failed write: it may be what filled the disk)."""
    shutil.rmtree(run_dir / NEW, ignore_errors=True)


# --- reading ----------------------------------------------------------------------------------------------
def load_first_good(run_dir: Path, load: Any) -> tuple[dict[str, Any], str | None]:
    """Verify the candidates newest first and ``load(ckpt_dir, state)`` the first that verifies and loads.

    Returns the state and a one-line note (without the run directory) when the newest could not be used (None
    otherwise); restores the RNG states. :class:`UserError` when none can be used."""
    failures: list[str] = []
    for ckpt in candidates(run_dir):
        state, why = verify(ckpt)
        if state is not None:
            try:
                load(ckpt, state)
            except Exception as exc:  # a file that verifies but does not load (wrong shapes, bad zip)
                why = f"does not load ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                state = None
        if state is None:
            failures.append(f"{ckpt.name}/: {why}")
            continue
        if "rng" in state:
            set_rng_state(state["rng"])
        note = None
        if failures:
            note = f"recovered: {'; '.join(failures)}; resumed from {ckpt.name}/ at step {state['step']}"
        return state, note
    if not failures:
        raise UserError(f"cannot resume {run_dir}: it has no checkpoint; use --overwrite to start it over")
    raise UserError(f"cannot resume {run_dir}: {'; '.join(failures)}; use --overwrite to start it over")


# --- accelerate (the engine: every trainer) ----------------------------------------------------------------------
def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """An LR scheduler's state as JSON (its lambdas are code, rebuilt by the trainer, not stored)."""
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


def restore_scheduler(scheduler: Any, saved: dict[str, Any] | None, step: int) -> None:
    """Load :func:`scheduler_state`; a checkpoint from before it existed is caught up by stepping ``step``
    times (a LambdaLR's rate depends on the step count alone)."""
    if saved is not None:
        scheduler.load_state_dict({**scheduler.state_dict(), **saved})
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        for _ in range(step):
            scheduler.step()


def save_accelerate_checkpoint(acc: Any, run_dir: Path, state: dict[str, Any], keep: int = 2) -> None:
    """``accelerate.save_state`` (model and optimizer, sharded under FSDP / DeepSpeed) into
    ``checkpoint.new/``, then :func:`finish` on the main process. Register no custom objects with
    accelerate: it pickles them and unpickles them with ``weights_only=False`` on resume (README "Run-directory integrity");
    scheduler and loop state go into ``state.json`` instead."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        begin(run_dir)
    acc.wait_for_everyone()
    try:
        acc.save_state(str(run_dir / NEW))
        acc.wait_for_everyone()
        if acc.is_main_process:
            finish(run_dir, state, keep)
    except BaseException as exc:
        if acc.is_main_process:
            abandon(run_dir)
        if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            raise UserError(f"cannot write a checkpoint into {run_dir}: {reason}") from None
        raise
    acc.wait_for_everyone()


def load_accelerate_checkpoint(acc: Any, run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The newest verified checkpoint through ``accelerate.load_state``: weights from safetensors, optimizer
    and RNG files with ``torch.load(weights_only=True)``; ``custom_checkpoint_*.pkl`` files are never read."""

    removed: list[str] = []

    def load(ckpt: Path, state: dict[str, Any]) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:  # accelerate refuses a folder whose pickles outnumber the registered objects
            for pkl in sorted(ckpt.glob("custom_checkpoint_*.pkl")):
                pkl.unlink()
                removed.append(pkl.name)
        acc.wait_for_everyone()
        acc.load_state(str(ckpt))

    state, note = load_first_good(run_dir, load)
    if removed:
        what = f"removed {', '.join(removed)} unread (a run directory's pickles are never loaded)"
        note = f"{note}; {what}" if note else what
    return state, note
