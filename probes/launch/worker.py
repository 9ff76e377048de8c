"""Worker process of the local launcher: ``python -m probes.launch.worker SPEC_JSON``.

Runs one job in its own process (the launcher sets ``CUDA_VISIBLE_DEVICES``), so a crash, an out-of-memory
error or a kill takes down one run and never the others. Exit codes: 0 finished or skipped, 130
interrupted (SIGTERM / Ctrl-C, resumable), 2 a user error, 3 another process is running this run (left
alone; also when another process, such as a `probes synth` without launcher, writes the run directory),
1 anything else (a diverged run exits 2: its summary says ``diverged``); the last stderr line says why.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from probes.errors import UserError
from probes.train.lock import RunLocked
from probes.train.progress import PlainLog

from .jobs import BUSY_EXIT, RunBusy, eprint, execute


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        eprint("usage: python -m probes.launch.worker SPEC_JSON")
        return 2
    try:
        spec = json.loads(Path(args[0]).read_text())
        spec["run_dir"], spec["config"]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        eprint(f"error: launch spec {args[0]} cannot be used: {exc}")
        return 2
    try:
        train = spec["config"].get("train", {}) if isinstance(spec["config"], dict) else {}
        log = PlainLog(Path(spec["run_dir"]).name, int(train.get("max_steps", 0)) or 1)
        summary = execute(spec["run_dir"], spec["config"], on_step=log.step)  # one line per evaluation
    except KeyboardInterrupt:
        eprint("error: interrupted")
        return 130
    except (RunBusy, RunLocked) as exc:
        eprint(f"error: {exc}")
        return BUSY_EXIT
    except UserError as exc:
        eprint(f"error: {exc}")
        return 2
    except Exception as exc:  # the traceback goes to the log; the last line stays the one-line reason
        traceback.print_exc()
        eprint(f"error: {type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    eprint(f"{spec['run_dir']}: {summary.get('status')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
