"""The state of every run of a grid, read from the run directories alone (no launcher or scheduler state).

A run directory is a non-hidden sub-directory of RUNS_DIR that a trainer wrote (config, summary, metrics,
writer lock or checkpoint), plus any run a launcher planned in ``RUNS_DIR/.launch/``; other directories are
not listed (``probes status /etc`` says there is no run directory). States: ``pending`` (planned, nothing
written yet), ``running``, ``finished``, ``interrupted``, ``stopped`` (``--stop-after``), ``failed``, ``diverged`` (non-finite loss), and
``dead``: the summary says running but no process writes the run any more (killed by SIGKILL or the OOM
killer, or the machine went down). For dead, interrupted and stopped runs the detail says what ``--resume`` (or
re-running a launcher) will do: continue from the newest verified checkpoint, restart from step 0 when there is
no checkpoint (:func:`probes.train.checkpoint.resume_point`, the rule every entry point shares), or refuse.

``running`` is never taken from ``summary.json`` alone (README "Run-directory integrity"). The writer lock
(:mod:`probes.train.lock`) decides: held means a live writer. Where it cannot tell (no lock file, a
filesystem without ``flock``, or a writer on another host whose lock this host may not see), the summary's
heartbeat decides: a run whose heartbeat is older than :data:`STALE_S` is dead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from probes.errors import UserError
from probes.io import host_name
from probes.runfiles import CONFIG, METRICS, SUMMARY
from probes.train.checkpoint import resume_point
from probes.train.layout import is_run_dir
from probes.train.lock import lock_state, read_holder

from .jobs import LAUNCH_DIR, WORKER_LOG, last_error_line, read_summary


@dataclass(frozen=True)
class RunState:
    name: str
    state: str
    steps_done: int | None
    max_steps: int | None
    steps_to_threshold: int | None
    final_acc: float | None
    detail: str  # threshold outcome, or the last error line


def run_dirs(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir} is not a directory")
    found = {p for p in runs_dir.iterdir() if not p.name.startswith(".") and is_run_dir(p)}
    launch = runs_dir / LAUNCH_DIR
    if launch.is_dir():
        found |= {runs_dir / p.stem for p in launch.glob("*.json")}
    return sorted(found)


def _max_steps(run_dir: Path) -> int | None:
    for path in (run_dir / CONFIG, run_dir.parent / LAUNCH_DIR / f"{run_dir.name}.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        train = data.get("config", data).get("train", {})
        if "max_steps" in train:
            return int(train["max_steps"])
    return None


def _last_step(run_dir: Path) -> int | None:
    try:
        lines = (run_dir / METRICS).read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return None


def _liveness(run_dir: Path, summary: dict | None) -> tuple[bool, str]:
    """(is a writer alive?, detail) from the writer lock, else from the heartbeat's age."""
    lock = lock_state(run_dir)
    heartbeat = summary.get("heartbeat") if summary else None
    age = time.time() - heartbeat if isinstance(heartbeat, (int, float)) else None
    seen = "" if age is None else f"heartbeat {_ago(age)} ago"
    if lock == "held":
        return True, seen
    holder = read_holder(run_dir) or {}
    remote = bool(holder.get("host")) and holder.get("host") != host_name()
    if (lock == "unknown" or remote) and age is not None and age < STALE_S:
        return True, f"{seen} on {holder.get('host')}" if remote else seen
    why = "no writer holds it" if lock == "free" else "no heartbeat"
    return False, f"{why}; {seen}" if seen else why


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def read_state(run_dir: Path) -> RunState:
    summary = read_summary(run_dir)
    max_steps = _max_steps(run_dir)
    garbage = summary is None and (run_dir / SUMMARY).exists()
    if summary is None:
        step = _last_step(run_dir)
        if step is None and not (run_dir / CONFIG).exists() and not garbage:
            return RunState(run_dir.name, "pending", None, max_steps, None, None, "")
        alive, detail = _liveness(run_dir, None)
        if garbage:
            detail = "summary.json is unreadable" + (f"; {detail}" if detail else "")
        if not alive:
            detail = f"{detail}; {resume_point(run_dir).hint()}"
        return RunState(run_dir.name, "running" if alive else "dead", step, max_steps, None, None, detail)
    state = str(summary.get("status", "running"))
    steps = summary.get("steps_done")
    liveness = ""
    if state == "running":
        steps = max(steps or 0, _last_step(run_dir) or 0)
        alive, liveness = _liveness(run_dir, summary)
        state = "running" if alive else "dead"
    if state in ("failed", "diverged"):
        detail = summary.get("error") or _last_log_line(run_dir) or "failed"
    elif state in ("running", "dead"):
        detail = liveness
    elif summary.get("reached"):
        detail = f"reached {summary.get('threshold')} at step {summary.get('steps_to_threshold')}"
    elif state == "finished":
        detail = "not reached"
    else:
        detail = summary.get("error") or ""
    if state in ("dead", "interrupted", "stopped"):  # what --resume (or a re-launch) will do with it
        detail = f"{detail}; {resume_point(run_dir).hint()}" if detail else resume_point(run_dir).hint()
    return RunState(
        run_dir.name, state, _int(steps), _int(summary.get("max_steps")) or max_steps,
        _int(summary.get("steps_to_threshold")), _float(summary.get("final_acc")), str(detail),
    )


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _last_log_line(run_dir: Path) -> str | None:
    try:
        return last_error_line((run_dir / WORKER_LOG).read_text())
    except OSError:
        return None


def collect(runs_dir: Path) -> list[RunState]:
    dirs = run_dirs(runs_dir)
    if not dirs:
        raise UserError(f"{runs_dir} has no run directories")
    return [read_state(d) for d in dirs]


STYLE = {"pending": "dim", "running": "cyan", "finished": "green", "interrupted": "yellow", "stopped": "yellow", "dead": "yellow",
         "failed": "red", "diverged": "red"}
STALE_S = 600.0  # a heartbeat older than this (10 trainer heartbeat periods) means the writer is gone


def wrap_name(name: str, width: int) -> str:
    """``name`` on lines of at most ``width`` characters, broken after a ``-`` where possible (a grid's run
    names differ at their end, lr and init seed, so nothing may be cut)."""
    lines, line = [], ""
    for part in name.replace("-", "-\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
        while len(line) > width:
            lines.append(line[:width])
            line = line[width:]
    return "\n".join([*lines, line] if line else lines)


FIXED_COLUMNS = 46  # state, steps, to thr., acc and the gaps between the six columns


def status_table(states: list[RunState], title: str = "", width: int = 80) -> Table:
    """The table of a grid for a console ``width`` wide. At 80 columns the run name is wrapped after a ``-``
    and the detail folded, never cut, and the numbers are never wrapped."""
    from rich import box

    name_width = max(16, width - FIXED_COLUMNS - 16)  # 16: the detail column and the table edges
    table = Table(title=title or None, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("run", no_wrap=True, min_width=min(name_width, max((len(s.name) for s in states), default=3)))
    table.add_column("state", no_wrap=True)
    for col in ("steps", "to thr.", "acc"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold", min_width=12)
    for s in states:
        steps = "" if s.steps_done is None else f"{s.steps_done}" + (f"/{s.max_steps}" if s.max_steps else "")
        to_threshold = (
            str(s.steps_to_threshold) if s.steps_to_threshold is not None
            else ("not reached" if s.state == "finished" else "")
        )
        acc = "" if s.final_acc is None else f"{s.final_acc:.3f}"
        table.add_row(escape(wrap_name(s.name, name_width)), f"[{STYLE.get(s.state, '')}]{s.state}", steps, to_threshold, acc, s.detail)
    counts = {k: sum(s.state == k for s in states) for k in STYLE}
    table.caption = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return table
