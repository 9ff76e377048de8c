"""One run of a grid as a launchable job, with the re-launch rule both launchers share.

A job is a run directory plus its :class:`RunConfig`. Before a job starts, :func:`decide` looks at what the
run directory already holds: a finished run is skipped, a run with a checkpoint is resumed exactly, a run
that started but never checkpointed starts again from step 0 (the rule of ``--resume``), an empty or missing
directory is started fresh. The launch spec (config and run directory) lives beside the run directories in ``RUNS_DIR/.launch/NAME.json``
and not inside the run directory: the trainer only starts in an empty directory, and an empty directory is
also how ``probes status`` shows a run that is planned but not started.

A worker holds an exclusive ``flock`` on ``RUNS_DIR/.launch/NAME.lock`` while it runs a job, so two
launchers sharing a grid (``--gpus 0,1`` and later ``--gpus 2,3``, or a re-submission while jobs still run)
never train the same run twice: the second worker finds the lock held and leaves the run alone. Where the
filesystem has no working ``flock`` the guard is skipped.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes import runfiles
from probes.errors import UserError
from probes.io import atomic_write_json, ensure_writable_dir
from probes.runfiles import CONFIG, SUMMARY
from probes.train import layout
from probes.train.checkpoint import FRESH, RESTART, resume_point
from probes.train.config import config_changes, run_config_from_dict
from probes.train.grid import PlannedRun
from probes.train.lock import RunLocked, lock_state

LAUNCH_DIR = ".launch"
WORKER_LOG = runfiles.WORKER_LOG  # the tail of the worker's output, written into the run directory
TAIL_LINES = 40
BUSY_EXIT = 3  # worker exit code: another process holds the run (probes.launch.worker)


class Action(str, enum.Enum):
    SKIP = "skip"  # finished
    RESUME = "resume"  # has a checkpoint
    RESTART = "restart"  # started, no checkpoint: starts again from step 0, same config
    FRESH = "fresh"  # empty or missing directory


@dataclass(frozen=True)
class RunResult:
    """What a launcher reports for one run, read back from its run directory."""

    run_dir: Path
    status: str  # finished | interrupted | failed | skipped | running (another worker holds it)
    steps_to_threshold: int | None
    error: str | None


class RunBusy(UserError):
    """Another process holds the run's lock: it is running there; leave it alone."""


def spec_path(run_dir: Path) -> Path:
    return run_dir.parent / LAUNCH_DIR / f"{run_dir.name}.json"


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / LAUNCH_DIR / f"{run_dir.name}.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock for the block; :class:`RunBusy` when another process holds it."""
    path = lock_path(run_dir)
    ensure_writable_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"{run_dir.name} is already running in another process") from None
        except OSError:  # no flock on this filesystem: run unguarded
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def is_running(run_dir: Path) -> bool:
    """True when a live worker holds the run's launch lock, or any process its writer lock (never creates
    a lock file)."""
    if lock_state(run_dir) == "held":
        return True
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary, or None when it is missing or not a JSON object (a garbage file is no summary)."""
    return layout.read_json_or_none(run_dir / SUMMARY)


def decide(run_dir: Path) -> Action:
    """The re-launch rule: finished runs are skipped; otherwise the resume rule every entry point shares
    (:func:`probes.train.checkpoint.resume_point`) says whether the run continues from a checkpoint, starts
    again from step 0 (started, no checkpoint) or starts fresh. A run whose checkpoints all fail verification
    counts as RESUME: the trainer refuses it with one line naming what is wrong."""
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "finished":
        return Action.SKIP
    action = resume_point(run_dir).action
    if action == FRESH:
        return Action.FRESH
    return Action.RESTART if action == RESTART else Action.RESUME


def check_launchable(runs: list[PlannedRun]) -> None:
    """One-line errors before anything is written: a device a launcher cannot honour, a run name twice, or
    an existing run directory that holds a different configuration (it would be skipped or resumed as is)."""
    seen: set[Path] = set()
    for p in runs:
        if p.config.train.device not in ("auto", "cuda", "cpu"):
            raise UserError(
                f"run {p.config.run_name} asks for device {p.config.train.device!r}; with a launcher use "
                "--device auto and pick GPUs with --gpus"
            )
        if p.run_dir in seen:
            raise UserError(f"the grid names run directory {p.run_dir} twice")
        seen.add(p.run_dir)
        if p.run_dir.exists() and not p.run_dir.is_dir():
            raise UserError(f"run directory {p.run_dir} exists and is not a directory")
        saved = p.run_dir / CONFIG
        if saved.is_file():
            data = layout.read_json_or_none(saved)
            try:
                same = data is not None and run_config_from_dict(data) is not None and not config_changes(data, p.config)
            except UserError:
                same = False
            if not same:
                diffs = "" if data is None else "; ".join(config_changes(data, p.config))
                raise UserError(
                    f"{p.run_dir} holds a run with a different configuration"
                    f"{f' ({diffs})' if diffs else ' (its config.json is unreadable)'}; delete it or choose another --out"
                )


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
    if summary.get("status") == "finished":  # it ended well before whatever stopped the worker
        return
    if summary.get("status") in ("failed", "interrupted", "diverged") and summary.get("error") is not None:
        return
    ensure_writable_dir(run_dir)
    atomic_write_json(run_dir / SUMMARY, {**summary, "status": status, "error": error})


def result_of(run_dir: Path, skipped: bool = False) -> RunResult:
    summary = read_summary(run_dir) or {}
    status = "skipped" if skipped else summary.get("status", "failed")
    error = summary.get("error")
    if status == "failed" and error is None:
        error = "worker exited without a summary"
    return RunResult(run_dir, status, summary.get("steps_to_threshold"), error)


def execute(
    run_dir: str | Path,
    config: dict[str, Any],
    *,
    sigterm_interrupts: bool = True,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume, or skip) one job in this process; the entry point of both launchers' workers.

    Raises :class:`RunBusy` (touching nothing) when another worker holds the run, and
    :class:`probes.train.lock.RunLocked` when another process writes its directory. A failure before the
    trainer wrote a summary (e.g. an unknown model) is recorded as a failed summary so that ``probes status``
    and the launchers see it; the exception is re-raised for the caller's exit code. ``SystemExit`` (how
    submitit leaves a task it requeued after a time-out or preemption) leaves the run ``interrupted``.
    The one resumable runner of the launchers' workers, the architecture study and ``probes demo --resume``;
    ``on_step`` is the trainer's progress callback.
    """
    from probes.train.loop import run  # heavy import: only inside the worker

    run_dir = Path(run_dir)
    if sigterm_interrupts:
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)
    with run_lock(run_dir):
        action = decide(run_dir)  # decided under the lock: another worker may have finished it meanwhile
        if action is Action.SKIP:
            return read_summary(run_dir) or {}
        try:
            cfg = run_config_from_dict(config)
            # RESTART goes through the same --resume rule as `probes synth --resume` (probes.train.rundir)
            return run(cfg, run_dir, resume=action is not Action.FRESH, on_step=on_step)
        except RunLocked:  # another writer (e.g. a `probes synth` without launcher) owns it: touch nothing
            raise
        except KeyboardInterrupt:
            mark_failed(run_dir, "interrupted", status="interrupted")
            raise
        except SystemExit:
            mark_failed(run_dir, "interrupted (preempted or timed out)", status="interrupted")
            raise
        except BaseException as exc:
            mark_failed(run_dir, f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise


def _raise_interrupt(signum: int, frame: Any) -> None:
    """The first SIGTERM / SIGINT interrupts the run; later ones are ignored so that the interrupted summary
    is written even when Ctrl-C reaches the worker and the launcher forwards SIGTERM as well."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def last_error_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def tail(text: str, n: int = TAIL_LINES) -> str:
    return "".join(ln + "\n" for ln in text.splitlines()[-n:])


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
