"""Reading run directories (schema_version 1, docs/CONTRACTS.md): the only place analysis touches the files.

Every figure and table is computed from :class:`Run` objects, so a run directory alone reproduces them. A
corrupt or partial directory is a :class:`~probes.errors.UserError` that names the file (and line), because
a silently skipped run would change medians without anyone noticing. A run that is still being written
(no ``summary.json``, or status ``running``) loads: it is the normal state of a grid being watched, and its
last metrics line may be half-appended, so only for such a run an unterminated last line is ignored and the
accuracy matrix may lag the eval lines by the write in flight. Aggregates (report, heatmap, curves) leave
such unfinished runs out by default (:func:`split_unfinished`) and say so; ``Run.state`` tells a live
writer (``running``) from a dead one (``dead``) the way ``probes status`` does (docs/CONTRACTS.md, Liveness).

Names and positions (docs/CONTRACTS.md, "One vocabulary"): a metric has the name it has in ``metrics.jsonl``
everywhere (``heldout_acc``, ``heldout_loss``, ``train_loss``, ``lr``, ``per_position_acc``,
``per_position_count``), and target positions are 1-based (position 1 = the first context token, the
paper's Fig. 7 axis): ``per_position_acc[i]`` of a metrics line is position ``i + 1``.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.errors import UserError
from probes.families import kind_of
from probes.runfiles import CONFIG, ENV, LOCK_FILE, MANIFEST, MATRIX, METRICS, SUMMARY

SCHEMA_VERSION = 1

# Keys analysis relies on; extra keys are allowed (writers may add informational fields within v1).
_CONFIG_KEYS = {
    "model": ("name", "family", "init_strategy", "init_seed"),
    "task": ("name", "params"),
    "train": ("lr", "batch_size", "max_steps", "threshold", "seed"),
}
_EVAL_KEYS = ("step", "samples_seen", "frac_steps", "heldout_acc", "per_position_acc")
_TRAIN_KEYS = ("step", "samples_seen", "loss")
_SUMMARY_KEYS = ("status", "reached", "threshold", "steps_to_threshold", "max_steps")
_STATUSES = ("running", "finished", "interrupted", "stopped", "failed", "diverged")
TIDY_COLUMNS = (
    "run", "model", "family", "kind", "task", "length", "order", "lr", "init_strategy", "init_seed", "status",
    "step", "samples_seen", "frac_steps", "train_loss", "heldout_loss", "heldout_acc",
    "position", "per_position_acc", "per_position_count",
)  # fmt: skip
UNFINISHED = ("running", "interrupted", "stopped")  # statuses of a run that has not ended (resumable or live)
STALE_S = 600.0  # a heartbeat older than this means the writer is gone (as `probes status`)


@dataclass(frozen=True)
class Run:
    """One run directory, validated. ``accuracy[e, k]`` is the accuracy of position bucket k at eval e."""

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    env: dict[str, Any]
    evals: list[dict[str, Any]]
    train_log: list[dict[str, Any]]
    accuracy: np.ndarray  # float64 [E, L]; NaN where a bucket had no held-out sample
    steps: np.ndarray  # int64 [E]
    counts: np.ndarray | None  # int64 [E, L] samples per bucket, when the matrix file has them
    summary: dict[str, Any] | None  # None while the trainer has not written summary.json yet

    @property
    def status(self) -> str:
        return str(self.summary["status"]) if self.summary is not None else "running"

    @property
    def state(self) -> str:
        """The status, with ``running`` split into ``running`` (a live writer) and ``dead`` (killed; resumable)."""
        if self.status != "running":
            return self.status
        return "running" if writer_alive(self.path, self.summary) else "dead"

    @property
    def finished(self) -> bool:
        """The run has ended (finished, failed or diverged): its numbers will not change any more."""
        return self.status not in UNFINISHED

    @property
    def name(self) -> str:
        return str(self.config.get("run_name") or self.path.name)

    @property
    def model(self) -> str:
        return str(self.config["model"]["name"])

    @property
    def family(self) -> str:
        return str(self.config["model"]["family"])

    @property
    def task(self) -> str:
        return str(self.config["task"]["name"])

    @property
    def length(self) -> int:
        """Context length L (task parameter ``length``; the number of position buckets for other tasks)."""
        value = self.config["task"]["params"].get("length")
        return int(value) if value is not None else self.num_positions

    @property
    def order(self) -> str:
        return str(self.config["task"]["params"].get("order", "-"))

    @property
    def lr(self) -> float:
        return float(self.config["train"]["lr"])

    @property
    def init_seed(self) -> int:
        return int(self.config["model"]["init_seed"])

    @property
    def max_steps(self) -> int:
        return int(self.config["train"]["max_steps"])

    @property
    def threshold(self) -> float:
        return float(self.config["train"]["threshold"])

    @property
    def eval_interval(self) -> int:
        """Steps between evaluations: ``train.eval_every``, or 1% of ``max_steps`` when it is null."""
        every = self.config["train"].get("eval_every")
        return int(every) if every is not None else max(1, self.max_steps // 100)

    @property
    def num_positions(self) -> int:
        return int(self.accuracy.shape[1])

    @property
    def heldout_acc(self) -> np.ndarray:
        return np.array([float(e["heldout_acc"]) for e in self.evals], dtype=np.float64)

    @property
    def samples_seen(self) -> np.ndarray:
        return np.array([int(e["samples_seen"]) for e in self.evals], dtype=np.int64)

    @property
    def frac_steps(self) -> np.ndarray:
        return np.array([float(e["frac_steps"]) for e in self.evals], dtype=np.float64)

    def grid_keys(self) -> dict[str, Any]:
        """The fields that identify this run in a grid: what a tidy table repeats on every row."""
        return {
            "run": self.name,
            "model": self.model,
            "family": self.family,
            "kind": kind_of(self.family) or "unknown",
            "task": self.task,
            "length": self.length,
            "order": self.order,
            "lr": self.lr,
            "init_strategy": str(self.config["model"]["init_strategy"]),
            "init_seed": self.init_seed,
            "status": self.status,
        }

    def to_records(self) -> list[dict[str, Any]]:
        """Tidy rows, one per evaluation x target position: the run keys, ``step``, ``samples_seen``,
        ``frac_steps``, the evaluation's overall ``heldout_acc`` and ``heldout_loss``, ``train_loss`` (the last
        training loss logged at or before the step; NaN if none), ``position`` (1-based: 1 = first context
        token), ``per_position_acc`` (NaN where the position had no held-out sample) and
        ``per_position_count`` (its held-out samples; None when the matrix lacks counts). Names are the
        ``metrics.jsonl`` names. ``heldout_acc`` is the count-weighted mean of ``per_position_acc``, so a
        plain mean over positions equals it only when every position has the same count."""
        keys = self.grid_keys()
        train_steps = [int(t["step"]) for t in self.train_log]
        rows = []
        for e, rec in enumerate(self.evals):
            i = bisect.bisect_right(train_steps, int(self.steps[e])) - 1
            base = {
                **keys,
                "step": int(self.steps[e]),
                "samples_seen": int(rec["samples_seen"]),
                "frac_steps": float(rec["frac_steps"]),
                "train_loss": _number(self.train_log[i].get("loss")) if i >= 0 else math.nan,
                "heldout_loss": _number(rec.get("heldout_loss")),
                "heldout_acc": _number(rec.get("heldout_acc")),
            }
            for k in range(self.num_positions):
                count = int(self.counts[e, k]) if self.counts is not None else None
                rows.append({**base, "position": k + 1, "per_position_acc": float(self.accuracy[e, k]),
                             "per_position_count": count})
        return rows

    def to_dataframe(self) -> Any:
        """:meth:`to_records` as a ``pandas.DataFrame`` (pandas is imported here, only when asked for;
        it comes with seaborn). Columns are present even for a run with no evaluation yet."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError("to_dataframe needs pandas (pip install pandas); to_records() does not") from None
        return pd.DataFrame(self.to_records(), columns=TIDY_COLUMNS)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def writer_alive(path: Path, summary: dict[str, Any] | None) -> bool:
    """Does a live process write this run? The rule of ``probes status`` (docs/CONTRACTS.md, Liveness): the
    writer lock held means yes; where the lock cannot tell (no lock file, no ``flock``), a heartbeat younger
    than :data:`STALE_S`. Read-only: a shared, non-blocking ``flock`` probe that never creates the file."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        lock = "unknown"
    else:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            lock = "free"
        except BlockingIOError:
            lock = "held"
        except OSError:
            lock = "unknown"
        finally:
            os.close(fd)
    if lock != "unknown":
        return lock == "held"
    beat = (summary or {}).get("heartbeat")
    return isinstance(beat, int | float) and time.time() - beat < STALE_S


def split_unfinished(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """(runs that have ended, runs that have not: running, dead, interrupted or stopped). Aggregates leave the
    second list out by default: a run at step 15 of 150 would count as "not reached by step 15"."""
    done = [r for r in runs if r.finished]
    return done, [r for r in runs if not r.finished]


def describe_unfinished(runs: Sequence[Run]) -> str:
    """``3 unfinished run(s) (2 running, 1 dead): NAME, NAME, …`` (at most three names)."""
    states: dict[str, int] = {}
    for r in runs:
        states[r.state] = states.get(r.state, 0) + 1
    kinds = ", ".join(f"{n} {s}" for s, n in states.items())
    names = ", ".join(r.name for r in runs[:3]) + (", …" if len(runs) > 3 else "")
    return f"{len(runs)} unfinished run(s) ({kinds}): {names}"


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand ``paths`` into run directories (a directory with ``config.json``), sorted within each argument.

    A grid directory (a directory holding run directories at any depth) expands into its runs; a path that
    does not exist, or a directory holding no run, is an error so a typo never yields an empty figure.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if path.is_file():
            if path.name != CONFIG:
                raise UserError(f"{path} is not a run directory (give the directory holding {CONFIG})")
            path = path.parent
        if (path / CONFIG).is_file():
            found.append(path)
            continue
        candidates = {p.parent for p in path.rglob(CONFIG) if p.is_file()}
        # A config.json nested inside a run directory (a copy in a sub-folder) is part of that run, not a run.
        runs = sorted(r for r in candidates if not any(parent in candidates for parent in r.parents))
        if not runs:
            raise UserError(f"no run directories (with {CONFIG}) found under {path}")
        found.extend(runs)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise UserError("no run directories given")
    return unique


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """:func:`find_runs` then :func:`load_run` each; all are validated before anything is drawn or written."""
    return [load_run(p) for p in find_runs(paths)]


def load_run(path: str | Path) -> Run:
    """Load and validate one run directory; raise :class:`UserError` naming the bad file (and line)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory {path} does not exist")
    if not (path / CONFIG).exists() and any(p.is_file() for p in path.rglob(CONFIG)):
        raise UserError(f"{path} holds run directories, it is not one: use load_runs([{str(path)!r}])")
    config = _read_json(path / CONFIG)
    _check_config(config, path / CONFIG)
    summary = _read_json(path / SUMMARY) if (path / SUMMARY).exists() else None
    if summary is not None:
        _check_summary(summary, path / SUMMARY)
    running = summary is None or summary["status"] == "running"
    if summary is None and not (path / METRICS).exists():
        raise UserError(f"{path} is not a complete run directory: it has neither {METRICS} nor {SUMMARY}")
    manifest = _read_json(path / MANIFEST)
    env = _read_json(path / ENV)
    evals, train_log = _read_metrics(path / METRICS, tolerate_partial_tail=running)
    accuracy, steps, counts = _read_matrix(path / MATRIX, evals, running)
    evals = evals[: len(steps)]
    return Run(path, config, manifest, env, evals, train_log, accuracy, steps, counts, summary)


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise UserError(f"{file} is missing")
    try:
        obj = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{file} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{file} must hold a JSON object")
    return obj


def _check_config(config: dict[str, Any], file: Path) -> None:
    version = config.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{file}: schema_version {version!r} is not supported (this reader knows {SCHEMA_VERSION})"
        )
    for section, keys in _CONFIG_KEYS.items():
        block = config.get(section)
        if not isinstance(block, dict):
            raise UserError(f"{file}: missing object {section!r}")
        for key in keys:
            if key not in block:
                raise UserError(f"{file}: missing key {section}.{key}")
    if not isinstance(config["task"]["params"], dict):
        raise UserError(f"{file}: task.params must be an object")
    train = config["train"]
    if not isinstance(train["max_steps"], int) or train["max_steps"] < 1:
        raise UserError(f"{file}: train.max_steps must be a positive integer")
    if train.get("eval_every") is not None and (
        not isinstance(train["eval_every"], int) or train["eval_every"] < 1
    ):
        raise UserError(f"{file}: train.eval_every must be a positive integer or null")


def _check_summary(summary: dict[str, Any], file: Path) -> None:
    for key in _SUMMARY_KEYS:
        if key not in summary:
            raise UserError(f"{file}: missing key {key!r}")
    if summary["status"] not in _STATUSES:
        raise UserError(
            f"{file}: unknown status {summary['status']!r} (expected one of {', '.join(_STATUSES)})"
        )


def _read_metrics(
    file: Path, tolerate_partial_tail: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not file.exists():
        return [], []  # a run that has started but not logged yet (summary says running)
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file} cannot be read: {exc}") from None
    lines = text.split("\n")
    evals: list[dict[str, Any]] = []
    train: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last_unterminated = number == len(lines)  # text after the final newline: an append in flight
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if last_unterminated and tolerate_partial_tail:
                break
            raise UserError(f"{file} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or rec.get("kind") not in ("eval", "train"):
            raise UserError(f"{file} line {number}: expected an object with kind 'eval' or 'train'")
        keys = _EVAL_KEYS if rec["kind"] == "eval" else _TRAIN_KEYS
        missing = [k for k in keys if k not in rec]
        if missing:
            raise UserError(f"{file} line {number}: {rec['kind']} record lacks {', '.join(missing)}")
        if rec["kind"] == "eval":
            if not isinstance(rec["per_position_acc"], list) or not rec["per_position_acc"]:
                raise UserError(f"{file} line {number}: per_position_acc must be a non-empty list")
            if evals and len(rec["per_position_acc"]) != len(evals[0]["per_position_acc"]):
                raise UserError(
                    f"{file} line {number}: per_position_acc has {len(rec['per_position_acc'])} "
                    f"entries, earlier eval lines have {len(evals[0]['per_position_acc'])}"
                )
            if evals and rec["step"] <= evals[-1]["step"]:
                raise UserError(f"{file} line {number}: eval step {rec['step']} does not increase")
            rec = {**rec, "line": number}
            evals.append(rec)
        else:
            train.append(rec)
    return evals, train


def _read_matrix(
    file: Path, evals: Sequence[dict[str, Any]], running: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The ``[E, L]`` matrix, cross-checked against the eval lines it must mirror row for row."""
    width = len(evals[0]["per_position_acc"]) if evals else 0
    if not file.exists():
        if evals and not running:
            raise UserError(f"{file} is missing but {file.parent / METRICS} has {len(evals)} eval lines")
        return np.zeros((0, width)), np.zeros(0, dtype=np.int64), None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{file} cannot be read: {str(exc).splitlines()[0]}") from None
    for key in ("accuracy", "step"):
        if key not in tensors:
            raise UserError(f"{file}: missing tensor {key!r}")
    # The trainer writes 6-decimal accuracies (metrics.jsonl) and stores them here as float32; rounding back to
    # 6 decimals restores the logged value exactly (float32 error < 6e-8), so a band at exactly the threshold
    # counts as reached here as it did in the trainer's stop rule.
    acc = np.round(tensors["accuracy"].astype(np.float64), 6)
    steps = tensors["step"].astype(np.int64)
    counts = tensors["count"].astype(np.int64) if "count" in tensors else None
    if acc.ndim != 2 or steps.shape != (acc.shape[0],) or (counts is not None and counts.shape != acc.shape):
        raise UserError(
            f"{file}: accuracy {list(acc.shape)}, step {list(steps.shape)} and count shapes disagree"
        )
    rows = acc.shape[0]
    # While running, the trainer appends an eval line and then rewrites the matrix: it may lag by one row.
    lag_ok = running and rows in (len(evals), len(evals) - 1)
    if rows != len(evals) and not lag_ok:
        raise UserError(
            f"{file}: accuracy has {rows} rows but {file.parent / METRICS} has {len(evals)} eval lines"
        )
    if rows and acc.shape[1] != width:
        raise UserError(f"{file}: accuracy has {acc.shape[1]} positions but eval lines have {width}")
    for e in range(rows):
        rec = evals[e]
        line_acc = np.array([math.nan if v is None else float(v) for v in rec["per_position_acc"]])
        if steps[e] != rec["step"] or not np.allclose(acc[e], line_acc, atol=1e-5, equal_nan=True):
            raise UserError(
                f"{file}: row {e} does not match eval line {rec['line']} (step {rec['step']}) of {METRICS}"
            )
    return acc, steps, counts
