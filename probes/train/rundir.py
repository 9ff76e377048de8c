"""Writing a self-describing run directory (schema in docs/CONTRACTS.md); analysis reads it back.

Every file is replaced atomically; ``metrics.jsonl`` is append-only and, on resume, cut back to the last
checkpoint so that a resumed run's metrics are identical to an uninterrupted run's. The helpers here are
shared by both trainers (README "Run-directory integrity"): preparing a directory under its writer lock, cleaning what a killed
writer left, reading back torn metrics, and naming the fields in which a resumed config differs.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from probes.errors import UserError
from probes.io import atomic_path, atomic_write_json, ensure_writable_dir, remove_stale_temps
from probes.runfiles import CONFIG, MATRIX, METRICS

from . import checkpoint
from .layout import config_differences, flatten, has_content, is_run_dir, own_entries, read_json_or_none

__all__ = ["config_differences", "flatten", "has_content", "read_json_or_none", "prepare", "restart", "RunWriter"]

HEARTBEAT_S = 60.0  # the summary's heartbeat is refreshed at every evaluation and at least this often


def say(message: str) -> None:
    """A one-line notice for the user (recovery, fresh start on --resume) on stderr."""
    print(message, file=sys.stderr, flush=True)


def prepare(
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    differences: Callable[[dict[str, Any]], list[str]] | None = None,
) -> str:
    """Make ``run_dir`` ready (the caller holds its writer lock). Returns what to do: ``fresh`` (train from step
    0), ``continue`` (load the newest checkpoint) or ``finished`` (nothing to train).

    ``overwrite`` empties the directory but keeps the lock file (deleting it would let a third writer in).
    Leftovers of a killed writer (stale temporary files, a half-written ``checkpoint.new``) are removed.
    ``resume`` follows :func:`probes.train.checkpoint.resume_point`: a run without any checkpoint is started
    again from step 0 (:func:`restart`; ``differences(saved config)`` names the fields in which the command
    differs from the run's ``config.json``)."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} exists and is not a directory")
    exists = has_content(run_dir)
    if exists and not (resume or overwrite):
        raise UserError(f"run directory {run_dir} exists; pass --resume to continue it or --overwrite to replace it")
    ensure_writable_dir(run_dir)
    if exists and overwrite:
        clear(run_dir)
    remove_stale_temps(run_dir)
    checkpoint.abandon(run_dir)
    if not resume:
        return checkpoint.FRESH
    point = checkpoint.resume_point(run_dir)
    if point.action == checkpoint.FRESH:
        say(f"--resume: no existing run in {run_dir} (none was started with these options); starting it fresh")
        return checkpoint.FRESH
    if point.action == checkpoint.RESTART:
        restart(run_dir, differences)
        return checkpoint.FRESH
    if point.action == checkpoint.FINISHED:
        return checkpoint.FINISHED
    return checkpoint.CONTINUE  # or REFUSE: loading says why no checkpoint can be used


def clear(run_dir: Path) -> None:
    """Remove everything but the writer lock file (the lock must outlive the run's files)."""
    for p in own_entries(run_dir):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


RESTART_NOTE = "no complete checkpoint (stopped before its first one was written); restarting it from step 0"


def restart(run_dir: Path, differences: Callable[[dict[str, Any]], list[str]] | None = None) -> None:
    """Resume a run that holds no checkpoint: nothing trained was kept, so it starts again from step 0 with the
    same config; the files written so far (metrics, summary, trackers) are removed and written anew, so the
    run directory never mixes two starts. Refused when ``config.json`` shows other options, or when the
    directory holds no run file at all (it is not a run directory: nothing is deleted)."""
    saved = read_json_or_none(run_dir / CONFIG)
    if saved is not None and differences is not None:
        diffs = differences(saved)
        if diffs:
            raise UserError(
                f"{run_dir} was started with a different configuration ({'; '.join(diffs)}); resume it with the "
                "same options, or use --overwrite or another --out"
            )
    if saved is None and not is_run_dir(run_dir):
        raise UserError(f"cannot resume {run_dir}: it holds no run (no config, summary, metrics or checkpoint)")
    clear(run_dir)
    say(f"{run_dir}: {RESTART_NOTE}")


def read_metric_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Parsed lines of ``metrics.jsonl`` and how many could not be parsed (a torn last line after a kill)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return [], 0
    records, bad = [], 0
    for ln in text.splitlines():
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def _finite_or_none(v: Any) -> Any:
    """JSON has no NaN / inf: a non-finite loss is written as null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _acc_row(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


class RunWriter:
    """Appends metrics and rewrites the per-position matrix and summary of one run.

    Positions without a held-out sample are ``null`` in ``metrics.jsonl`` and NaN in the matrix: "not
    measured", never accuracy 0."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.metrics = run_dir / METRICS
        self.acc_rows: list[list[float]] = []
        self.count_rows: list[list[int]] = []
        self.steps: list[int] = []
        self.last_heartbeat = 0.0

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.dir / name, obj)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _finite_or_none(v) for k, v in record.items()}, allow_nan=False) + "\n"
        try:
            with self.metrics.open("a") as fh:
                fh.write(line)
        except OSError as exc:
            raise UserError(f"cannot write {self.metrics}: {exc.strerror or exc}") from None

    def add_eval(self, record: dict[str, Any], counts: list[int]) -> None:
        self.append(record)
        self.acc_rows.append(_acc_row(record["per_position_acc"]))
        self.count_rows.append(counts)
        self.steps.append(record["step"])
        self._write_matrix()

    def _write_matrix(self) -> None:
        tensors = {
            "accuracy": torch.tensor(self.acc_rows, dtype=torch.float32),
            "step": torch.tensor(self.steps, dtype=torch.int64),
            "count": torch.tensor(self.count_rows, dtype=torch.int64),
        }
        with atomic_path(self.dir / MATRIX) as tmp:
            save_file(tensors, str(tmp))

    def truncate_to(self, step: int) -> str | None:
        """Drop metric lines after ``step`` (the resumed run recomputes them) and unreadable lines (a line
        torn by a kill); reload the evals. Returns a note when unreadable lines were dropped."""
        records, bad = read_metric_lines(self.metrics)
        kept = [rec for rec in records if rec["step"] <= step]
        with atomic_path(self.metrics) as tmp:
            tmp.write_text("".join(json.dumps(rec) + "\n" for rec in kept))
        self.acc_rows, self.count_rows, self.steps = [], [], []
        for rec in kept:
            if rec.get("kind") == "eval":
                self.acc_rows.append(_acc_row(rec["per_position_acc"]))
                self.count_rows.append(rec["per_position_count"])
                self.steps.append(rec["step"])
        if self.steps:
            self._write_matrix()
        else:
            (self.dir / MATRIX).unlink(missing_ok=True)
        return f"dropped {bad} unreadable line(s) of {self.metrics.name}" if bad else None

    def heartbeat_due(self) -> bool:
        return time.time() - self.last_heartbeat >= HEARTBEAT_S


def stamp(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with a fresh ``heartbeat`` (seconds since the epoch): ``probes status`` tells a live
    writer from a dead one by it where the lock cannot tell (no ``flock`` on the filesystem)."""
    return {**summary, "heartbeat": round(time.time(), 3)}
