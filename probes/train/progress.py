"""Progress as plain lines, for output that is not a terminal (nohup, SLURM, ``| tee``), where a rich progress
bar draws nothing: one line per evaluation with step / total, elapsed time, ETA and the live metric. Used by
``probes synth`` when stdout or stderr is not a terminal and by the launchers' workers, whose output goes to
log files (README "Training probes")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def default_metrics(info: dict[str, Any]) -> str:
    acc = "" if info.get("acc") is None else f"acc {info['acc']:.3f} "
    return f"{acc}loss {info['loss']:.3f}"


def hms(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PlainLog:
    """``step(step, info)`` is a trainer's ``on_step``; it prints ``[3/108] mamba-tiny L200 pre 5e-05 s2  780/78000
    1%  0:05:12 eta 8:34:10  acc 0.312 loss 2.104`` (step / total, elapsed, ETA, live metric) after each
    evaluation and the last step. Elapsed is the run's own clock (it continues over resumes); the ETA is this process's rate times the
    steps left."""

    def __init__(self, label: str, max_steps: int, metrics: Callable[[dict[str, Any]], str] = default_metrics,
                 write: Callable[[str], None] | None = None) -> None:
        self.label, self.max_steps, self.metrics = label, max_steps, metrics
        self.write = write or (lambda line: print(line, flush=True))
        self.start: tuple[float, int] | None = None  # (time, step) when this process took its first step

    def step(self, step: int, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, step)
        if not info.get("evaluated") and step != self.max_steps:
            return
        t0, s0 = self.start
        rate = (now - t0) / (step - s0) if step > s0 else 0.0
        elapsed = info.get("wall_time", now - t0)
        eta = hms(rate * (self.max_steps - step)) if step > s0 else "?"
        self.write(f"{self.label}  {step}/{self.max_steps} {100 * step / self.max_steps:.0f}%  "
                   f"{hms(elapsed)} eta {eta}  {self.metrics(info)}")
