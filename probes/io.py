"""Atomic file output: a reader never sees a half-written file, and a failed command leaves none behind.

Everything the toolkit writes goes to a temporary file in the destination directory and is renamed over the
destination only when complete (rename is atomic on POSIX within one filesystem). Three guarantees beyond
that (README "Run-directory integrity"):

- **Modes.** The final file gets ``0o666 & ~umask`` like any file ``open()`` creates, even when the writer
  (safetensors, ``tempfile``) made it ``0600``: a colleague on a shared cluster can read the results.
- **Targets.** A destination that exists and is not a regular file (a device such as ``/dev/full``, a
  directory, a FIFO) or that is a symbolic link is refused with one line: renaming over it would replace
  the device or the link with a plain file.
- **Temporary files.** Their names carry the writer's pid and host (``.NAME.~PID@HOST~RANDOM.tmp``); they
  are deleted on any exception, and on SIGTERM / SIGHUP when nobody else handles those signals; the stale
  ones of a writer that was SIGKILLed are removed by the next write of the same file on the same host.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

_LIVE_TEMPS: set[str] = set()  # temporary files of this process, removed by the signal handler
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_handlers_installed = False


def host_name() -> str:
    """This machine's short name, safe inside a file name (no ``~``, ``@`` or ``/``)."""
    name = socket.gethostname().split(".")[0] or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def default_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def apply_default_modes(root: str | Path) -> None:
    """Give every regular file under ``root`` (or ``root`` itself) the umask's mode: third-party writers
    (safetensors, ``save_pretrained``, accelerate) create ``0600`` temporaries and rename them."""
    root, mode = Path(root), default_mode()
    paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for p in paths:
        with contextlib.suppress(OSError):
            os.chmod(p, mode)


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` (and parents) or raise a one-line :class:`UserError` saying why it cannot be."""
    if path.is_symlink() and not path.is_dir():
        raise UserError(f"cannot create directory {path}: it is a dangling symbolic link")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"directory {path} is not writable")


def check_output_target(dest: Path) -> None:
    """Refuse a destination that renaming a file over would destroy or silently bypass."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"cannot write {dest}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"refusing to write {dest}: it is a symbolic link (write to its target path instead)")
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"refusing to write {dest}: it is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        kind = "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special file"
        raise UserError(f"refusing to write {dest}: it is a {kind}, not a regular file")


def check_writable_file(dest: str | Path) -> None:
    """Fail now, with one line, where :func:`atomic_path` would fail later: a device, directory or link as
    ``dest``, a directory that cannot be created, or one where no file can be created (``/proc``)."""
    dest = Path(dest)
    check_output_target(dest)
    ensure_writable_dir(dest.parent if str(dest.parent) else Path("."))
    tmp = temp_path_for(dest)
    tmp.unlink()
    _LIVE_TEMPS.discard(str(tmp))


def _temp_prefix(dest: Path) -> str:
    return f".{dest.name}.~"


def _parse_owner(name: str) -> tuple[int, str] | None:
    """``(pid, host)`` from a temporary file name made by :func:`atomic_path`, else None."""
    try:
        owner = name.split(".~", 1)[1].split("~", 1)[0]
        pid, host = owner.split("@", 1)
        return int(pid), host
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """True for a temporary file of :func:`atomic_path` whose writer (on this host) no longer exists."""
    owner = _parse_owner(path.name)
    if owner is None or not path.name.startswith("."):
        return False
    pid, host = owner
    return host == host_name() and pid != os.getpid() and not _pid_alive(pid)


def remove_stale_temps(directory: Path, dest_name: str | None = None) -> list[Path]:
    """Delete the stale temporary files in ``directory`` (of ``dest_name`` only, when given)."""
    removed: list[Path] = []
    prefix = None if dest_name is None else _temp_prefix(Path(dest_name))
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for p in entries:
        if prefix is not None and not p.name.startswith(prefix):
            continue
        if ".~" in p.name and is_stale_temp(p):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
    return removed


def _cleanup_and_reraise(signum: int, frame: Any) -> None:
    for name in list(_LIVE_TEMPS):
        with contextlib.suppress(OSError):
            os.unlink(name)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_cleanup() -> None:
    """Remove live temporary files on SIGTERM / SIGHUP, where the signal would otherwise kill us outright.

    Only signals still at their default action are taken: a command that turns SIGTERM into
    KeyboardInterrupt (``probes synth``) already unwinds through ``atomic_path``'s cleanup."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for sig in _HANDLED_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _cleanup_and_reraise)


def temp_path_for(dest: Path, suffix: str = "") -> Path:
    """Create an empty temporary file beside ``dest`` (registered for cleanup) and return its path."""
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f"{_temp_prefix(dest)}{os.getpid()}@{host_name()}~", suffix=suffix or ".tmp", dir=dest.parent
        )
    except OSError as exc:
        raise UserError(f"cannot write {dest}: {exc.strerror or exc}") from None
    os.close(fd)
    _LIVE_TEMPS.add(tmp_name)
    return Path(tmp_name)


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` on success, delete it on any error."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    check_output_target(dest)
    ensure_writable_dir(parent)
    remove_stale_temps(parent, dest.name)
    _install_signal_cleanup()
    tmp = temp_path_for(dest, suffix)
    try:
        yield tmp
        os.chmod(tmp, default_mode())  # the writer may have replaced our file with its own 0600 one
        check_output_target(dest)  # it may have become a link or device while we wrote
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":  # disk full, quota, EIO …
            raise UserError(f"cannot write {dest}: {_reason(exc)}") from None
        raise
    finally:
        _LIVE_TEMPS.discard(str(tmp))


def _reason(exc: BaseException) -> str:
    """The one-line cause of a failed write (safetensors wraps the OSError in its own message)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"^Error while serializing: ", "", text)


def atomic_write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def atomic_write_json(dest: str | Path, obj: Any) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
