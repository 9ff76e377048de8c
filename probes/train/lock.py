"""One writer per run directory: an ``flock`` on ``RUN_DIR/.writer.lock`` held while a process writes it.

Every entry point that writes a run directory (``probes synth`` without a launcher, the launcher workers,
``probes vlm train``) holds this lock for as long as it writes, so a second writer (the same command run
twice, a ``--resume`` or an ``--overwrite`` of a live run) stops with one line naming the holder instead of
interleaving its metrics with the first one's (README "Run-directory integrity"). The file stays in the directory after
the writer ends (deleting a lock file races with the next locker); it then records the last holder.

The lock file holds JSON ``{"pid", "host", "started"}`` of the holder. ``probes status`` asks the lock
whether the writer is alive (:func:`lock_state`): the kernel drops an ``flock`` when its process dies, even
by SIGKILL or the OOM killer, so a held lock means a live writer and a free one a dead run. Where the
filesystem does not support ``flock`` the lock is skipped and status falls back to the heartbeat.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.io import ensure_writable_dir, host_name
from probes.runfiles import LOCK_FILE


class RunLocked(UserError):
    """Another live process writes this run directory."""


def lock_file(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def read_holder(run_dir: Path) -> dict[str, Any] | None:
    """The holder recorded in the lock file (the current one while it is held, else the last one)."""
    try:
        data = json.loads(lock_file(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"


@contextlib.contextmanager
def writer_lock(run_dir: Path) -> Iterator[None]:
    """Hold the writer lock of ``run_dir`` (created if needed) for the block; :class:`RunLocked` if held."""
    run_dir = Path(run_dir)
    ensure_writable_dir(run_dir)
    path = lock_file(run_dir)
    if path.is_symlink():
        raise UserError(f"refusing to lock {run_dir}: {LOCK_FILE} is a symbolic link")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"{run_dir} is being written by {describe_holder(read_holder(run_dir))}; "
                "wait for it to end or stop that process first"
            ) from None
        except OSError:  # no flock on this filesystem: run unguarded, status falls back to the heartbeat
            pass
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "host": host_name(), "started": started}) + "\n"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_state(run_dir: Path) -> str:
    """``"held"`` (a live writer), ``"free"`` (nobody writes it) or ``"unknown"`` (no lock file, or no
    ``flock`` on this filesystem). Never creates the lock file."""
    try:
        fd = os.open(lock_file(run_dir), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return "unknown"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    except OSError:
        return "unknown"
    finally:
        os.close(fd)
    return "free"


def is_held(run_dir: Path) -> bool:
    return lock_state(run_dir) == "held"


def check_unlocked(run_dir: Path) -> None:
    """:class:`RunLocked` now when another process writes ``run_dir`` (a CLI calls it before any progress
    output; the trainer's own :func:`writer_lock` remains the guard)."""
    if lock_state(run_dir) == "held":
        raise RunLocked(
            f"{run_dir} is being written by {describe_holder(read_holder(run_dir))}; "
            "wait for it to end or stop that process first"
        )
