"""One run of a grid as a launchable job, with the re-launch rule both launchers share.

A job is a run directory plus its :class:`RunConfig`. Before a job starts, :func:`decide` looks at what the
run directory already holds: a finished run is skipped, a run with a checkpoint is resumed exactly, a run
that started but never checkpointed is restarted, an empty or missing directory is started fresh. The
launch spec (config and run directory) lives beside the run directories in ``RUNS_DIR/.launch/NAME.json``
and not inside the run directory: the trainer only starts in an empty directory, and an empty directory is
also how ``probes status`` shows a run that is planned but not started.
"""

from __future__ import annotations

import enum
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.io import atomic_write_json, ensure_writable_dir
from probes.train.config import run_config_from_dict
from probes.train.grid import PlannedRun

LAUNCH_DIR = ".launch"
WORKER_LOG = "worker.log"  # the tail of the worker's output, written into the run directory
TAIL_LINES = 40


class Action(str, enum.Enum):
    SKIP = "skip"  # finished
    RESUME = "resume"  # has a checkpoint
    RESTART = "restart"  # started, no checkpoint: nothing worth keeping
    FRESH = "fresh"  # empty or missing directory


@dataclass(frozen=True)
class RunResult:
    """What a launcher reports for one run, read back from its run directory."""

    run_dir: Path
    status: str  # finished | interrupted | failed | skipped
    steps_to_threshold: int | None
    error: str | None


def spec_path(run_dir: Path) -> Path:
    return run_dir.parent / LAUNCH_DIR / f"{run_dir.name}.json"


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / d / "state.json").is_file() for d in ("checkpoint", "checkpoint.old"))


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def decide(run_dir: Path) -> Action:
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "finished":
        return Action.SKIP
    if has_checkpoint(run_dir):
        return Action.RESUME
    if run_dir.is_dir() and any(run_dir.iterdir()):
        return Action.RESTART
    return Action.FRESH


def write_spec(planned: PlannedRun) -> Path:
    """Record the run's config beside its directory and create the (empty) run directory: it is now planned."""
    path = spec_path(planned.run_dir)
    ensure_writable_dir(planned.run_dir)
    atomic_write_json(path, {"run_dir": str(planned.run_dir), "config": planned.config.to_dict()})
    return path


def mark_failed(run_dir: Path, error: str, status: str = "failed") -> None:
    """Make the summary say why a run stopped when the trainer could not (it failed before writing one,
    or its process was killed); keeps the trainer's numbers when there are some."""
    summary = read_summary(run_dir) or {
        "reached": False, "threshold": None, "steps_to_threshold": None, "samples_to_threshold": None,
        "final_acc": None, "best_acc": None, "steps_done": 0, "max_steps": None, "wall_time": 0.0,
    }
    if summary.get("status") in ("failed", "interrupted") and summary.get("error") is not None:
        return
    ensure_writable_dir(run_dir)
    atomic_write_json(run_dir / "summary.json", {**summary, "status": status, "error": error})


def result_of(run_dir: Path, skipped: bool = False) -> RunResult:
    summary = read_summary(run_dir) or {}
    status = "skipped" if skipped else summary.get("status", "failed")
    error = summary.get("error")
    if status == "failed" and error is None:
        error = "worker exited without a summary"
    return RunResult(run_dir, status, summary.get("steps_to_threshold"), error)


def execute(run_dir: str | Path, config: dict[str, Any], *, sigterm_interrupts: bool = True) -> dict[str, Any]:
    """Run (or resume, or skip) one job in this process; the entry point of both launchers' workers.

    A failure before the trainer wrote a summary (e.g. an unknown model) is recorded as a failed summary so
    that ``probes status`` and the launchers see it; the exception is re-raised for the caller's exit code.
    """
    from probes.train.loop import run  # heavy import: only inside the worker

    run_dir = Path(run_dir)
    action = decide(run_dir)
    if action is Action.SKIP:
        return read_summary(run_dir) or {}
    if sigterm_interrupts:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        cfg = run_config_from_dict(config)
        return run(cfg, run_dir, resume=action is Action.RESUME, overwrite=action is Action.RESTART)
    except KeyboardInterrupt:
        mark_failed(run_dir, "interrupted", status="interrupted")
        raise
    except BaseException as exc:
        mark_failed(run_dir, f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def last_error_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def tail(text: str, n: int = TAIL_LINES) -> str:
    return "".join(ln + "\n" for ln in text.splitlines()[-n:])


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
