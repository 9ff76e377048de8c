"""The state of every run of a grid, read from the run directories alone (no launcher or scheduler state).

A run directory is any non-hidden sub-directory of RUNS_DIR, plus any run a launcher planned in
``RUNS_DIR/.launch/``. States: ``pending`` (planned, no metrics yet), ``running``, ``finished``,
``interrupted``, ``failed`` — from ``summary.json``, or ``running`` when only ``metrics.jsonl`` exists
(docs/CONTRACTS.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from probes.errors import UserError

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
    found = {p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    launch = runs_dir / LAUNCH_DIR
    if launch.is_dir():
        found |= {runs_dir / p.stem for p in launch.glob("*.json")}
    return sorted(found)


def _max_steps(run_dir: Path) -> int | None:
    for path in (run_dir / "config.json", run_dir.parent / LAUNCH_DIR / f"{run_dir.name}.json"):
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
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return None


def read_state(run_dir: Path) -> RunState:
    summary = read_summary(run_dir)
    max_steps = _max_steps(run_dir)
    if summary is None:
        step = _last_step(run_dir)
        if step is None and not (run_dir / "config.json").exists():
            return RunState(run_dir.name, "pending", None, max_steps, None, None, "")
        return RunState(run_dir.name, "running", step, max_steps, None, None, "")
    state = summary.get("status", "running")
    steps = summary.get("steps_done")
    if state == "running":
        steps = max(steps or 0, _last_step(run_dir) or 0)
    if state == "failed":
        detail = summary.get("error") or _last_log_line(run_dir) or "failed"
    elif summary.get("reached"):
        detail = f"reached {summary.get('threshold')} at step {summary.get('steps_to_threshold')}"
    elif state == "finished":
        detail = "not reached"
    else:
        detail = summary.get("error") or ""
    return RunState(
        run_dir.name, state, steps, summary.get("max_steps") or max_steps, summary.get("steps_to_threshold"),
        summary.get("final_acc"), detail,
    )


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


STYLE = {"pending": "dim", "running": "cyan", "finished": "green", "interrupted": "yellow", "failed": "red"}


def status_table(states: list[RunState], title: str = "") -> Table:
    table = Table(title=title or None)
    for col in ("run", "state", "steps", "steps to threshold", "final acc", "detail"):
        table.add_column(col, justify="right" if col in ("steps", "steps to threshold", "final acc") else "left")
    for s in states:
        steps = "" if s.steps_done is None else f"{s.steps_done}" + (f"/{s.max_steps}" if s.max_steps else "")
        to_threshold = (
            str(s.steps_to_threshold) if s.steps_to_threshold is not None
            else ("not reached" if s.state == "finished" else "")
        )
        acc = "" if s.final_acc is None else f"{s.final_acc:.3f}"
        table.add_row(s.name, f"[{STYLE.get(s.state, '')}]{s.state}", steps, to_threshold, acc, s.detail)
    counts = {k: sum(s.state == k for s in states) for k in STYLE}
    table.caption = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return table
